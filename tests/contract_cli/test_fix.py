"""`fix SERVER [--yes] [--json]` (DESIGN 7)."""
from __future__ import annotations

import pytest

from .conftest import assert_fix_shape, ids, parse_json


@pytest.mark.slow
def test_fix_classic_iis_binding(cli):
    p = cli.run("fix", "fix-iis", "--yes", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    obj = parse_json(p)
    assert_fix_shape(obj)
    assert obj["server"] == "fix-iis"
    assert obj["plan_id"] is not None
    assert obj["state"] == "SUCCEEDED"
    assert obj["before"]["status"] == "unhealthy"
    assert "SSTP_HASH_MISMATCH" in ids(obj["before"])
    assert [s["action"] for s in obj["steps"]] == [s["action"] for s in obj["before"]["plan"]["steps"]]
    assert all(s["ok"] for s in obj["steps"])
    assert obj["after"]["status"] == "healthy"
    assert obj["after"]["error"] is None
    # the re-check is stored: a later check agrees
    p2 = cli.run("check", "fix-iis", "--json")
    assert p2.returncode == 0
    assert parse_json(p2)["status"] == "healthy"


def test_fix_remoteaccess_stopped(cli):
    p = cli.run("fix", "fix-stopped", "--yes", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    obj = parse_json(p)
    assert_fix_shape(obj)
    assert obj["state"] == "SUCCEEDED"
    assert [s["action"] for s in obj["steps"]] == ["restart_remoteaccess"]
    assert obj["steps"][0]["changed"] is True
    assert obj["after"]["status"] == "healthy"


def test_fix_urlacl_conflict(cli):
    p = cli.run("fix", "fix-urlacl", "--yes", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    obj = parse_json(p)
    assert_fix_shape(obj)
    assert "URLACL_CONFLICT" in ids(obj["before"])
    assert obj["after"]["status"] == "healthy"


@pytest.mark.slow
def test_fix_of_healthy_server(cli):
    p = cli.run("fix", "fix-healthy", "--yes", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    obj = parse_json(p)
    assert_fix_shape(obj)
    assert obj["before"]["status"] == "healthy"
    assert obj["steps"] == []
    assert obj["after"] is None or obj["after"]["status"] == "healthy"


def test_fix_without_plan_not_fixable(cli):
    p = cli.run("fix", "fix-foreign", "--yes", "--json")
    assert p.returncode == 1, p.stdout + p.stderr
    obj = parse_json(p)
    assert_fix_shape(obj)
    assert obj["steps"] == []
    assert obj["before"]["status"] == "unhealthy"
    assert obj["before"]["plan"] is None


def test_fix_not_elevated_runs_nothing(cli):
    p = cli.run("fix", "fix-noadmin", "--yes", "--json")
    assert p.returncode == 1, p.stdout + p.stderr
    obj = parse_json(p)
    assert_fix_shape(obj)
    assert "NOT_ELEVATED" in ids(obj["before"])
    assert obj["steps"] == []
    assert cli.lab.servers["fix-noadmin"].twin.actions == []


def test_fix_unreachable_server_exit_2(cli):
    p = cli.run("fix", "fix-refused", "--yes", "--json")
    assert p.returncode == 2, p.stdout + p.stderr
    obj = parse_json(p)
    assert_fix_shape(obj)
    assert obj["before"]["status"] == "error"
    assert obj["before"]["error"]["kind"] == "unreachable"
    assert obj["after"] is None
    assert obj["steps"] == []


def test_fix_unknown_server_exit_2(cli):
    before = cli.requests_total()
    p = cli.run("fix", "nosuch", "--yes")
    assert p.returncode == 2
    assert "nosuch" in p.stdout + p.stderr
    assert cli.requests_total() == before


def test_fix_unknown_server_json(cli):
    p = cli.run("fix", "nosuch", "--yes", "--json")
    assert p.returncode == 2
    obj = parse_json(p)
    assert_fix_shape(obj)
    assert obj["before"]["error"]["kind"] == "config"
    assert obj["after"] is None


def test_fix_text_mode_yes(cli):
    p = cli.run("fix", "fix-healthy", "--yes")
    assert p.returncode == 0
    assert "fix-healthy" in p.stdout + p.stderr


@pytest.mark.slow
def test_fix_without_yes_on_a_pipe_is_refused_and_changes_nothing(cli):
    before = cli.run("check", "iis", "--json")
    p = cli.run("fix", "iis", stdin="n\n")  # not a terminal: no answer can be read, so usage error
    assert p.returncode == 3 and p.stdout == "" and "--yes" in p.stderr
    after = cli.run("check", "iis", "--json")
    assert after.returncode == 1
    assert ids(parse_json(after)) == ids(parse_json(before))
    assert cli.lab.servers["iis"].twin.actions == []


@pytest.mark.slow
def test_fix_still_unhealthy_after_exit_1(cli):
    p = cli.run("fix", "fix-warn", "--yes", "--json")
    assert p.returncode == 1, p.stdout + p.stderr
    obj = parse_json(p)
    assert_fix_shape(obj)
    assert obj["steps"], obj
    assert obj["after"] is not None
    assert obj["after"]["status"] == "unhealthy"
    assert "SSTP_HASH_MISMATCH" not in ids(obj["after"])
    assert "SSTP_CERT_EXPIRING" in ids(obj["after"])


@pytest.mark.slow
def test_fix_renewal_binds_newer_certificate(cli):
    p = cli.run("fix", "fix-expiry", "--yes", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    obj = parse_json(p)
    assert_fix_shape(obj)
    assert {"SSTP_CERT_EXPIRING", "SSTP_CERT_RENEWAL_NOT_BOUND"} <= ids(obj["before"])
    assert obj["state"] == "SUCCEEDED"
    assert obj["after"]["status"] == "healthy"


@pytest.mark.slow
def test_fix_history_records_plan(cli):
    p = cli.run("fix", "fix-stopped", "--yes", "--json")  # healthy by now (or fixed here)
    assert p.returncode == 0
    h = cli.run("history", "fix-stopped", "--json")  # the fix this test just ran
    assert h.returncode == 0, h.stderr
    entries = parse_json(h)
    assert isinstance(entries, list) and entries


@pytest.mark.parametrize("argv", [("fix",), ("fix", "a", "b"), ("fix", "--yes", "--frob", "ok1")])
def test_fix_usage(cli, argv):
    p = cli.run(*argv)
    assert p.returncode == 3


def test_fix_aborts_when_state_changed_since_plan(cli):
    """DESIGN 1: re-probe and compare the plan's fingerprint (state changed: abort, nothing touched)."""
    server = cli.lab.servers["fix-changed"]
    twin = server.twin
    original = twin.probe
    calls = {"n": 0}

    def probe(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            # between the plan's check (probe and client view) and the fix's re-probe, someone rebinds
            # IIS (site and HTTP.sys) with the SSTP certificate
            for b in twin.state.ip_bindings:
                b.cert_hash = twin.state.sha1_hash
            for b in twin.state.iis_bindings:
                b.cert_hash = twin.state.sha1_hash
        return original(*a, **kw)

    twin.probe = probe
    try:
        p = cli.run("fix", "fix-changed", "--yes", "--json")
    finally:
        twin.probe = original
    assert calls["n"] >= 2
    assert twin.actions == []  # nothing touched
    assert p.returncode == 2, p.stdout + p.stderr
    obj = parse_json(p)
    assert_fix_shape(obj)
    assert obj["after"] is None
    assert obj["state"] != "SUCCEEDED"


def test_fix_step_failure(cli):
    """A step that fails: the plan ends FAILED, the re-check is not healthy -> exit 1 (the fix did run)."""
    twin = cli.lab.servers["fix-fail"].twin
    original = twin.set_sstp_certificate

    def failing(thumbprint):
        return {"ok": False, "changed": False, "detail": "Set-RemoteAccess: access denied (injected)",
                "exit_code": 5}

    twin.set_sstp_certificate = failing
    try:
        p = cli.run("fix", "fix-fail", "--yes", "--json")
    finally:
        twin.set_sstp_certificate = original
    obj = parse_json(p)
    assert_fix_shape(obj)
    assert obj["state"] == "FAILED"
    failed = [s for s in obj["steps"] if not s["ok"]]
    assert failed and failed[0]["action"] == "bind_sstp_certificate"
    assert "injected" in failed[0]["detail"]
    # Never worse off (DESIGN 5 [2]): the wildcard bindings the plan deleted are back, with the
    # certificate SSTP is configured with; here that certificate is the right one, so the server is
    # better off than before (IIS's binding is gone), yet the plan FAILED.
    rollback = [s for s in obj["steps"] if s["detail"].startswith("rollback: ")]
    assert [s["action"] for s in rollback] == ["add_sstp_httpsys_binding"] * 2
    assert obj["after"] is not None
    assert p.returncode == (0 if obj["after"]["status"] == "healthy" else 1), p.stdout + p.stderr


def test_fix_uses_one_session_for_probe_steps_reprobe(cli):
    """DESIGN 9: a fix run reuses one runspace pool for its probe, its steps and its re-probe."""
    server = cli.lab.servers["fix-count"]
    server.endpoint.clear_log()
    p = cli.run("fix", "fix-count", "--yes", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    obj = parse_json(p)
    steps = len(obj["steps"])
    actions = [r.action for r in server.requests]
    # the check before the plan (1 probe) + the run (re-probe, steps, re-probe): one shell each. The
    # sequences (bind, restart) take several pipelines each, all on the run's one pool (DESIGN 9 [2]).
    assert actions.count("Command") >= 1 + 1 + steps + 1
    assert actions.count("Create") <= 2


def test_check_is_one_round_trip(cli):
    server = cli.lab.servers["ok2"]
    n = len(server.requests)
    p = cli.run("check", "ok2", "--json")
    assert p.returncode == 0
    actions = [r.action for r in server.requests[n:]]
    assert actions.count("Command") == 1
    assert actions.count("Create") == 1


def _run_on_tty(cli, answer: bytes, *args: str):
    """Run the CLI with a terminal on stdin (stdout/stderr captured) and type `answer`."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "bot", "--config", str(cli.config), *args],
                                stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli.env(),
                                cwd=str(cli.tmp), text=True)
        os.close(slave)
        os.write(master, answer)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
    return proc.returncode, out, err


def test_fix_confirmed_on_terminal(cli):
    rc, out, err = _run_on_tty(cli, b"y\n", "fix", "fix-tty-yes", "--json")
    assert rc == 0, out + err
    import json
    obj = json.loads(out)
    assert_fix_shape(obj)
    assert obj["state"] == "SUCCEEDED"
    assert cli.lab.servers["fix-tty-yes"].twin.actions


def test_fix_declined_on_terminal_changes_nothing(cli):
    rc, _out, _err = _run_on_tty(cli, b"n\n", "fix", "fix-tty-no")
    assert rc != 0
    assert cli.lab.servers["fix-tty-no"].twin.actions == []


def test_fix_declined_on_terminal_json(cli):
    import json
    _rc, out, _err = _run_on_tty(cli, b"n\n", "fix", "fix-tty-no-json", "--json")
    assert cli.lab.servers["fix-tty-no-json"].twin.actions == []
    obj = json.loads(out)
    assert_fix_shape(obj)
    assert obj["state"] == "REJECTED"
    assert obj["after"] is None
    assert obj["steps"] == []


def test_fix_by_local_operator_under_two_person_rule(cli, tmp_path):
    """DESIGN 7: `fix` ... (the local operator approves), whatever the Slack approvers list says."""
    text = cli.config.read_text(encoding="utf-8")
    text = text.replace("approvers = []", 'approvers = ["U0123ABCD"]').replace(
        "two_person_rule = false", "two_person_rule = true")
    cfg = tmp_path / "2p.toml"
    cfg.write_text(text, encoding="utf-8")
    p = cli.run("fix", "fix-2p", "--yes", "--json", config=cfg)
    assert p.returncode == 0, p.stdout + p.stderr
    obj = parse_json(p)
    assert obj["state"] == "SUCCEEDED"
