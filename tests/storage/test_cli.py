"""`sstp-bot history` and `sstp-bot db` through the real CLI entry point."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.cli import Environment, main
from commands.errors import PlanStateError
from storage import PlanState, Repository, head_revision
from storage.engine import build_engine
from storage.migrate import current_revision, upgrade

from .conftest import FakeClock, add_check, add_plan, sample_snapshot


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, str, FakeClock]:
    db = tmp_path / "data" / "x.db"
    config = tmp_path / "sstp-bot.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n\n[servers.vpn01]\nhost = "vpn01.corp.example.com"\n'
        '\n[servers.vpn02]\nhost = "vpn02.corp.example.com"\n'
        '\n[servers.vpn03]\nhost = "vpn03.corp.example.com"\n'
    )
    return config, f"sqlite:///{db}", FakeClock()


def cli(config: Path, *argv: str, clock: FakeClock | None = None) -> Run:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, stdin=io.StringIO(), environ={}, clock=clock or FakeClock())
    code = main(["--config", str(config), *argv], env=env)
    return Run(code, out.getvalue(), err.getvalue())


def _seed(url: str, clock: FakeClock) -> int:
    with Repository(url, clock=clock) as repo:
        add_check(repo, clock, "vpn02", status="healthy", findings=[])
        clock.advance(minutes=1)
        plan_id = add_plan(repo, clock)
        clock.advance(minutes=1)
        repo.transition(plan_id, PlanState.PROPOSED, PlanState.APPROVED, actor="U0BBBB2")
        with pytest.raises(PlanStateError):  # a second click: refused and audited
            repo.transition(plan_id, PlanState.PROPOSED, PlanState.APPROVED, actor="U0CCCC3")
        repo.transition(plan_id, PlanState.APPROVED, PlanState.RUNNING, actor="system")
        repo.record_step_result(plan_id, {"action": "remove_iis_binding", "ok": True, "changed": True,
                                          "detail": "removed *:443: from Default Web Site"})
        repo.transition(plan_id, PlanState.RUNNING, PlanState.SUCCEEDED, actor="system")
        clock.advance(minutes=1)
        add_check(repo, clock, "oldvpn", status="error", findings=[])  # removed from the inventory since
        return plan_id


def test_history_table(setup: tuple[Path, str, FakeClock]) -> None:
    config, url, clock = setup
    plan_id = _seed(url, clock)
    run = cli(config, "history")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert "oldvpn" in lines[0]  # newest first, one entry and its summary below it
    assert f"plan #{plan_id}" in run.out and "SUCCEEDED" in run.out and "approved by U0BBBB2" in run.out
    assert "2 critical: IIS_HTTPS_BINDING, SSTP_HASH_MISMATCH" in run.out
    assert "no findings" in run.out
    run = cli(config, "history", "VPN01", "--limit", "1")
    assert run.code == 0 and len(run.out.strip().splitlines()) == 2 and f"plan #{plan_id}" in run.out


def test_history_json(setup: tuple[Path, str, FakeClock]) -> None:
    config, url, clock = setup
    plan_id = _seed(url, clock)
    run = cli(config, "history", "vpn01", "--json")
    assert run.code == 0, run.err
    entries = json.loads(run.out)
    assert [e["kind"] for e in entries] == ["plan", "check"]
    plan, check = entries
    assert plan["id"] == plan_id and plan["state"] == "SUCCEEDED" and plan["approver"] == "U0BBBB2"
    assert plan["at"] == "2026-11-25T12:01:00Z" and plan["step_results"][0]["ok"] is True
    assert check["plan_id"] == plan_id and check["status"] == "unhealthy"
    assert [f["id"] for f in check["findings"]] == ["SSTP_HASH_MISMATCH", "IIS_HTTPS_BINDING"]
    assert check["error"] is None and check["duration_ms"] == 2000


def test_history_of_a_server_without_any(setup: tuple[Path, str, FakeClock]) -> None:
    config, url, clock = setup
    _seed(url, clock)
    run = cli(config, "history", "vpn03")  # in the inventory, never checked
    assert (run.code, run.out.strip()) == (0, "No history for vpn03.")
    assert json.loads(cli(config, "history", "vpn03", "--json").out) == []
    # Neither in the inventory nor in the history: a typo, a configuration error like `check ghost`
    run = cli(config, "history", "ghost")
    assert run.code == 2 and "Unknown server 'ghost'" in run.err and run.out == ""
    run = cli(config, "history", "vpn011", "--json")
    assert run.code == 2 and "Did you mean 'vpn01'?" in run.err
    doc = json.loads(run.out)
    assert set(doc) == {"error"} and doc["error"]["kind"] == "config" and "vpn011" in doc["error"]["message"]
    run = cli(config, "history", "oldvpn")  # not in the inventory any more, still has history
    assert run.code == 0 and "oldvpn" in run.out and "check #" in run.out


def test_plan_audit_trail(setup: tuple[Path, str, FakeClock]) -> None:
    config, url, clock = setup
    plan_id = _seed(url, clock)
    run = cli(config, "history", "--plan", str(plan_id))
    assert run.code == 0, run.err
    assert f"Plan {plan_id} for vpn01: SUCCEEDED" in run.out
    for text in ("propose", "U0CCCC3", "refused", "already approved by U0BBBB2", "succeed"):
        assert text in run.out
    run = cli(config, "history", "--plan", str(plan_id), "--json")
    events = json.loads(run.out)
    assert [(e["actor"], e["action"], e["outcome"]) for e in events] == [
        ("U0AAAA1", "propose", "ok"), ("U0BBBB2", "approve", "ok"), ("U0CCCC3", "approve", "refused"),
        ("system", "start", "ok"), ("system", "step", "ok"), ("system", "succeed", "ok")]
    assert events[0]["at"] == "2026-11-25T12:01:00Z"


def test_errors_and_usage(setup: tuple[Path, str, FakeClock]) -> None:
    config, url, clock = setup
    _seed(url, clock)
    run = cli(config, "history", "--plan", "999")
    assert run.code == 2 and "plan 999 not found" in run.err
    assert cli(config, "history", "--limit", "0").code == 3
    assert cli(config, "history", "vpn01", "--plan", "1").code == 3
    assert cli(config, "db").code == 3
    assert cli(config, "db", "prune", "--older-than", "-1").code == 3
    assert cli(config, "db", "prune", "--older-than", "99999999999").code == 3  # not an OverflowError
    assert cli(config.parent / "missing.toml", "history").code == 2


def test_db_upgrade_and_refusal_without_auto_upgrade(setup: tuple[Path, str, FakeClock]) -> None:
    config, url, _ = setup
    engine = build_engine(url)
    upgrade(engine, "0001_initial")
    config.write_text(config.read_text().replace('x.db"\n', 'x.db"\nauto_upgrade = false\n', 1))
    run = cli(config, "history")
    assert run.code == 2 and "sstp-bot db upgrade" in run.err
    run = cli(config, "db", "upgrade")
    assert run.code == 0, run.err
    assert f"upgraded from 0001_initial to {head_revision()}" in run.out
    assert current_revision(engine) == head_revision()
    engine.dispose()
    assert f"already at the current revision {head_revision()}" in cli(config, "db", "upgrade").out
    assert cli(config, "history").out.strip() == "No history yet."


def test_db_prune(setup: tuple[Path, str, FakeClock]) -> None:
    config, url, clock = setup
    with Repository(url, clock=clock) as repo:
        add_check(repo, clock, snapshot=sample_snapshot(iis_cert="CD" * 20))
        add_check(repo, clock, snapshot=sample_snapshot(iis_cert="EF" * 20))
        clock.advance(days=10)
        add_check(repo, clock, snapshot=sample_snapshot())
    run = cli(config, "db", "prune", "--older-than", "7", clock=clock)
    assert run.code == 0, run.err
    assert "Dropped 2 snapshot bodies" in run.out
    assert "Dropped 0 snapshot bodies" in cli(config, "db", "prune", "--older-than", "7", clock=clock).out


def test_relative_sqlite_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "etc" / "sstp-bot.toml"
    config.parent.mkdir()
    config.write_text('[database]\nurl = "sqlite:///var/sstp-bot.db"\n')
    monkeypatch.chdir(tmp_path)
    run = cli(config, "db", "upgrade")
    assert run.code == 0, run.err
    assert f"upgraded from (empty) to {head_revision()}" in run.out
    assert (tmp_path / "var" / "sstp-bot.db").is_file()


def test_a_bad_database_url_is_a_clear_configuration_error(tmp_path: Path) -> None:
    import importlib.util

    cases = [("not a url", "is not a database URL")]
    if importlib.util.find_spec("psycopg") is None:  # the driver is an optional extra
        cases.append(("postgresql://u:hunter2@127.0.0.1:1/db", "not installed"))
    for url, expected in cases:
        config = tmp_path / "c.toml"
        config.write_text(f'[database]\nurl = "{url}"\n')
        out, err = io.StringIO(), io.StringIO()
        code = main(["--config", str(config), "history"], env=Environment(stdout=out, stderr=err, environ={}))
        assert code == 2 and expected in err.getvalue(), err.getvalue()
        assert "hunter2" not in err.getvalue() + out.getvalue()


def test_a_database_that_cannot_be_opened_is_one_line_for_every_command(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    config = tmp_path / "sstp-bot.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{blocker}/x.db"\n')
    for argv in (("db", "upgrade"), ("history",), ("db", "prune", "--older-than", "1")):
        run = cli(config, *argv)
        assert run.code == 2, argv
        assert run.err.startswith("error: cannot open the database") and "unexpected" not in run.err, argv
        assert run.err.count("\n") == 1, run.err
