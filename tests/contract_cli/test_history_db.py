"""`history`, `history --plan`, `servers`, `db upgrade`, `db prune` (DESIGN 7)."""
from __future__ import annotations

import json

import pytest

from .conftest import parse_json


@pytest.fixture(scope="module")
def hist(cli, tmp_path_factory):
    """The inventory with its own, fresh database; a few checks and one fix recorded in it."""
    tmp = tmp_path_factory.mktemp("history")
    text = cli.config.read_text(encoding="utf-8")
    db = tmp / "history.db"
    start = text.index('url = "') + len('url = "')
    end = text.index('"', start)
    cfg = tmp / "inventory.toml"
    cfg.write_text(text[:start] + f"sqlite:///{db}" + text[end:], encoding="utf-8")
    p = cli.run("db", "upgrade", config=cfg)
    assert p.returncode == 0, p.stdout + p.stderr
    for _ in range(3):
        assert cli.run("check", "ok1", "--json", config=cfg).returncode == 0
    assert cli.run("check", "ok2", "--json", config=cfg).returncode == 0
    assert cli.run("check", "closed", "--json", config=cfg).returncode == 2
    # a plan that is proposed and run: fix of a server that is broken in this lab
    fix = cli.run("fix", "hist-stopped", "--yes", "--json", config=cfg)
    assert fix.returncode == 0, fix.stdout + fix.stderr
    plan_id = parse_json(fix)["plan_id"]
    assert plan_id is not None
    return cfg, plan_id


def _entries(obj):
    assert isinstance(obj, (list, dict))
    if isinstance(obj, dict):
        for key in ("entries", "history", "items", "events"):
            if isinstance(obj.get(key), list):
                return obj[key]
        raise AssertionError(f"no list in {sorted(obj)}")
    return obj


def _mentions(entry, text: str) -> bool:
    return text in json.dumps(entry)


def test_history_all_json(cli, hist):
    cfg, _ = hist
    p = cli.run("history", "--json", config=cfg)
    assert p.returncode == 0, p.stderr
    entries = _entries(parse_json(p))
    assert entries
    blob = json.dumps(entries)
    for name in ("ok1", "ok2", "closed", "hist-stopped"):
        assert name in blob


def test_history_server_json(cli, hist):
    cfg, _ = hist
    p = cli.run("history", "ok1", "--json", config=cfg)
    assert p.returncode == 0
    entries = _entries(parse_json(p))
    assert len(entries) >= 3
    assert all(_mentions(e, "ok1") for e in entries)
    assert not any(_mentions(e, '"ok2"') for e in entries)


def test_history_limit(cli, hist):
    cfg, _ = hist
    p = cli.run("history", "ok1", "--limit", "2", "--json", config=cfg)
    assert p.returncode == 0
    assert 1 <= len(_entries(parse_json(p))) <= 2
    p = cli.run("history", "--limit", "1", "--json", config=cfg)
    assert p.returncode == 0
    assert len(_entries(parse_json(p))) == 1


def test_history_text(cli, hist):
    cfg, _ = hist
    p = cli.run("history", "ok1", config=cfg)
    assert p.returncode == 0
    assert "ok1" in p.stdout
    p = cli.run("history", "ok1", "--limit", "1", config=cfg)
    assert p.returncode == 0


def test_history_records_the_error_kind(cli, hist):
    cfg, _ = hist
    p = cli.run("history", "closed", "--json", config=cfg)
    assert p.returncode == 0
    assert "unreachable" in p.stdout


def test_history_plan_json(cli, hist):
    cfg, plan_id = hist
    p = cli.run("history", "--plan", str(plan_id), "--json", config=cfg)
    assert p.returncode == 0, p.stderr
    trail = parse_json(p)
    blob = json.dumps(trail).lower()
    # one plan's audit trail: who approved it, that it ran, how it ended
    assert "approve" in blob
    assert "succeeded" in blob
    assert "stopped" in blob


def test_history_plan_text(cli, hist):
    cfg, plan_id = hist
    p = cli.run("history", "--plan", str(plan_id), config=cfg)
    assert p.returncode == 0
    assert str(plan_id) in p.stdout


def test_history_unknown_plan(cli, hist):
    cfg, _ = hist
    p = cli.run("history", "--plan", "999999", "--json", config=cfg)
    assert p.returncode == 2
    assert "999999" in p.stdout + p.stderr


@pytest.mark.parametrize("argv", [
    ("history", "--limit", "abc"),
    ("history", "--limit"),
    ("history", "--plan"),
    ("history", "--plan", "x"),
    ("history", "a", "b"),
    ("db",),
    ("db", "prune"),
    ("db", "prune", "--older-than", "abc"),
    ("db", "nonsense"),
    ("nonsense",),
    ("servers", "extra"),
])
def test_usage_errors(cli, hist, argv):
    cfg, _ = hist
    p = cli.run(*argv, config=cfg)
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)


def test_servers(cli, hist):
    cfg, _ = hist
    p = cli.run("servers", config=cfg)
    assert p.returncode == 0
    assert "ok1" in p.stdout and "emea" in p.stdout


def test_db_upgrade_fresh_and_idempotent(cli, tmp_path):
    text = cli.config.read_text(encoding="utf-8")
    start = text.index('url = "') + len('url = "')
    end = text.index('"', start)
    db = tmp_path / "fresh.db"
    cfg = tmp_path / "fresh.toml"
    cfg.write_text(text[:start] + f"sqlite:///{db}" + text[end:], encoding="utf-8")
    p = cli.run("db", "upgrade", config=cfg)
    assert p.returncode == 0, p.stdout + p.stderr
    assert db.exists()
    p = cli.run("db", "upgrade", config=cfg)
    assert p.returncode == 0
    p = cli.run("history", "--json", config=cfg)
    assert p.returncode == 0
    assert _entries(parse_json(p)) == []


@pytest.mark.slow
def test_db_prune_keeps_history(cli, hist):
    cfg, plan_id = hist
    before = _entries(parse_json(cli.run("history", "--json", "--limit", "100", config=cfg)))
    p = cli.run("db", "prune", "--older-than", "30", config=cfg)
    assert p.returncode == 0, p.stdout + p.stderr
    p = cli.run("db", "prune", "--older-than", "0", config=cfg)
    assert p.returncode == 0, p.stdout + p.stderr
    after = _entries(parse_json(cli.run("history", "--json", "--limit", "100", config=cfg)))
    assert len(after) >= 1
    p = cli.run("history", "--plan", str(plan_id), "--json", config=cfg)
    assert p.returncode == 0
    assert before  # sanity


def test_history_with_bad_config(cli, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[defaults]\nfrobnicate = 1\n", encoding="utf-8")
    p = cli.run("history", config=cfg)
    assert p.returncode not in (0, 1)
    assert "frobnicate" in p.stdout + p.stderr
