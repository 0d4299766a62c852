"""`fix --yes --json` against RemoteAccess faults, DirectAccess and a large probe (issue 9, DESIGN 5 [2], 9 [2], 10 [2]).

Each runs end to end: the CLI, the service, the executor, pypsrp and the lab's RemoteAccess model.
"""

from __future__ import annotations

import pytest

from commands.lab.runtime import ScriptRuntime
from commands.lab.twin import SSTP_APP_ID
from commands.scripts import SCRIPTS

from .conftest import LabSetup

pytestmark = pytest.mark.slow


def _wildcards(twin) -> dict[str, tuple[str, str]]:
    state = twin.copy_state()
    return {b.endpoint: (b.cert_hash, b.app_id) for b in state.ip_bindings if b.endpoint in ("0.0.0.0:443", "[::]:443")}


def test_a_slow_stop_is_waited_for_and_the_fix_heals(lab_factory):
    """StopPending lasts longer than one poll: the executor polls until Stopped, then starts
    RemoteAccess (the old script's deadline killed the restart half-way, DOMAIN 14)."""
    setup: LabSetup = lab_factory(["remoteaccess-slow-stop"])
    twin = setup.server("vpn-slow-stop").twin
    run = setup.cli("fix", "vpn-slow-stop", "--yes", "--json")
    assert run.code == 0, (run.stdout, run.stderr)
    doc = run.json()
    assert doc["state"] == "SUCCEEDED" and doc["after"]["status"] == "healthy"
    assert doc["steps"][-1]["action"] == "bind_sstp_certificate"
    assert twin.remoteaccess_history[:2] == ["StopPending", "Stopped"]
    assert twin.remoteaccess_history[-1] == "Running"
    # More than one poll of the state while it was StopPending: the wait really waited.
    controls = [p["Action"] for a, p in twin.actions if a == "control_remoteaccess"]
    assert controls == ["Stop", "Start"]
    polls = sum(1 for name, _ in setup.server("vpn-slow-stop").endpoint.executor.received
                if name == "remoteaccess_state")
    assert polls >= 3


def test_set_remoteaccess_failing_leaves_both_bindings_and_remoteaccess_running(lab_factory):
    """DESIGN 5 [2]: the plan deleted IIS's wildcard bindings, then Set-RemoteAccess threw. The
    executor re-adds both with the certificate SSTP is configured with; RemoteAccess keeps running;
    the plan is FAILED with the rollback steps recorded (fix --json, history --plan)."""
    setup: LabSetup = lab_factory(["set-remoteaccess-fails"])
    twin = setup.server("vpn-set-fails").twin
    configured = twin.copy_state().sha1_hash
    run = setup.cli("fix", "vpn-set-fails", "--yes", "--json")
    assert run.code == 1, (run.stdout, run.stderr)
    doc = run.json()
    assert doc["state"] == "FAILED"
    actions = [(s["action"], s["ok"]) for s in doc["steps"]]
    failed = actions.index(("bind_sstp_certificate", False))
    assert actions[failed + 1:] == [("add_sstp_httpsys_binding", True), ("add_sstp_httpsys_binding", True)]
    assert all(s["detail"].startswith("rollback: ") for s in doc["steps"][failed + 1:])
    assert "CIM provider failed" in doc["steps"][failed]["detail"]
    # Never worse off: a certificate on every wildcard endpoint that had one, under SSTP's AppId.
    assert _wildcards(twin) == {"0.0.0.0:443": (configured, SSTP_APP_ID), "[::]:443": (configured, SSTP_APP_ID)}
    state = twin.copy_state()
    assert state.services["RemoteAccess"].status == "Running"
    assert "control_remoteaccess" not in [a for a, _ in twin.actions]  # never stopped
    # The record: the plan's step results and its audit trail hold the rollback steps.
    plan = next(e for e in setup.cli("history", "vpn-set-fails", "--json").json() if e["kind"] == "plan")
    assert [r["action"] for r in plan["step_results"]][failed + 1:] == ["add_sstp_httpsys_binding"] * 2
    assert all(r.get("rollback") for r in plan["step_results"][failed + 1:])
    trail = setup.cli("history", "--plan", str(doc["plan_id"]), "--json").json()
    steps = [e for e in trail if e["action"] == "step"]
    assert len(steps) == len(doc["steps"])
    assert trail[-1]["action"] == "fail"


def test_a_start_that_fails_ends_failed_and_the_rollback_tries_to_start_it(lab_factory):
    setup: LabSetup = lab_factory(["remoteaccess-start-fails"])
    twin = setup.server("vpn-start-fails").twin
    run = setup.cli("fix", "vpn-start-fails", "--yes", "--json")
    assert run.code == 1, (run.stdout, run.stderr)
    doc = run.json()
    assert doc["state"] == "FAILED"
    # The plan deleted the wildcard bindings (old certificate) before binding: the rollback re-adds them
    # with the certificate SSTP is now configured with, then tries to start RemoteAccess once more.
    assert [(s["action"], s["ok"]) for s in doc["steps"]][-4:] == [
        ("bind_sstp_certificate", False), ("add_sstp_httpsys_binding", True), ("add_sstp_httpsys_binding", True),
        ("restart_remoteaccess", False)]
    assert "stopped again after it was started" in doc["steps"][-4]["detail"]
    assert all(s["detail"].startswith("rollback: ") for s in doc["steps"][-3:])
    configured = twin.copy_state().sha1_hash
    assert _wildcards(twin) == {"0.0.0.0:443": (configured, SSTP_APP_ID), "[::]:443": (configured, SSTP_APP_ID)}
    # The rollback did ask for a start once more (the fault makes it fail again).
    assert [p["Action"] for a, p in twin.actions if a == "control_remoteaccess"] == ["Stop", "Start", "Start"]


def test_a_directaccess_server_gets_no_certificate_change(lab_factory):
    """DESIGN 4 [2]: no plan changes the certificate or deletes a reservation on a DirectAccess server.
    The rule lives in the engine; Set-RemoteAccess refuses as a second line (set_sstp_certificate)."""
    setup: LabSetup = lab_factory(["directaccess"])
    twin = setup.server("vpn-directaccess").twin
    before = twin.copy_state()
    run = setup.cli("fix", "vpn-directaccess", "--yes", "--json")
    touched = [a for a, _ in twin.actions]
    after = twin.copy_state()
    # The script refuses on its own even when a plan asks (defence in depth).
    assert after.sha1_hash == before.sha1_hash and after.remote_access_thumbprint == before.remote_access_thumbprint
    assert after.url_reservations == before.url_reservations
    # The engine's rule: the plan never asks (the findings stay, with guidance).
    assert "set_sstp_certificate" not in touched and "delete_url_reservation" not in touched, touched
    assert run.code in (0, 1), (run.stdout, run.stderr)


def test_a_directaccess_server_with_the_iis_error_is_repaired_with_its_own_certificate(lab_factory):
    """DESIGN 4 [2], 5 [2]: the renewal in the store is not bound (DirectAccess), but the plan that
    removes IIS's binding and deletes both wildcard bindings binds the certificate SSTP already uses, so
    both wildcard endpoints end with SSTP's binding of that certificate and the plan succeeds."""
    setup: LabSetup = lab_factory(["directaccess-iis-binding"])
    twin = setup.server("vpn-da-iis").twin
    before = twin.copy_state()
    run = setup.cli("fix", "vpn-da-iis", "--yes", "--json")
    doc = run.json()
    after = twin.copy_state()
    assert doc["state"] == "SUCCEEDED", (run.stdout, run.stderr)
    assert after.sha1_hash == before.sha1_hash and after.sha256_hash == before.sha256_hash
    assert _wildcards(twin) == {"0.0.0.0:443": (before.sha1_hash, SSTP_APP_ID), "[::]:443": (before.sha1_hash, SSTP_APP_ID)}
    assert [f["id"] for f in doc["after"]["findings"] if f["severity"] != "info"] == ["SSTP_CERT_RENEWAL_NOT_BOUND"]
    assert [p["thumbprint"] for a, p in twin.actions if a == "set_sstp_certificate"] == [before.sha1_hash]


def test_a_2_mb_probe_is_reassembled_from_several_receives(lab_factory):
    setup: LabSetup = lab_factory(["large-probe"])
    server = setup.server("vpn-large")
    server.endpoint.clear_log()
    run = setup.cli("check", "vpn-large", "--json")
    assert run.code == 0, (run.stdout, run.stderr)
    assert run.json()["status"] == "healthy"
    receives = [r for r in server.requests if r.action == "Receive" and r.command_id]
    assert len(receives) >= 4  # 2.1 MB, base64 in envelopes of at most 512,000 bytes (DOMAIN 14)


def test_every_script_the_bot_sends_goes_in_a_local_scope(lab_factory):
    """DOMAIN 14: the lab refuses a script not sent in a local scope; a fix that uses every script
    succeeds or rolls back, and every script the lab received came with useLocalScope = true."""
    setup: LabSetup = lab_factory(["set-remoteaccess-fails", "urlacl-conflict", "remoteaccess-stopped"])
    for name in ("vpn-set-fails", "vpn-urlacl", "vpn-stopped"):
        setup.cli("fix", name, "--yes", "--json")
    received: list[tuple[str | None, bool | None]] = []
    for server in setup.lab.servers.values():
        runtime = server.endpoint.executor
        assert isinstance(runtime, ScriptRuntime)
        received.extend(runtime.received)
    assert {name for name, _ in received} == set(SCRIPTS)
    assert {scope for _, scope in received} == {True}


def test_a_missing_remoteaccess_module_is_refused_and_the_bindings_come_back(lab_factory):
    setup: LabSetup = lab_factory(["remoteaccess-module-missing"])
    twin = setup.server("vpn-no-module").twin
    before = twin.copy_state()
    run = setup.cli("fix", "vpn-no-module", "--yes", "--json")
    doc = run.json()
    assert doc["state"] == "FAILED"
    failed = next(s for s in doc["steps"] if not s["ok"])
    assert failed["action"] == "bind_sstp_certificate" and "RemoteAccess PowerShell module" in failed["detail"]
    assert _wildcards(twin) == _wildcards_of(before)  # the same certificate on both, as before the plan
    assert twin.copy_state().services["RemoteAccess"].status == "Running"
    assert "control_remoteaccess" not in [a for a, _ in twin.actions]


def _wildcards_of(state) -> dict[str, tuple[str, str]]:
    return {b.endpoint: (b.cert_hash, b.app_id) for b in state.ip_bindings if b.endpoint in ("0.0.0.0:443", "[::]:443")}
