"""Drift: the server changes between the check and the approved fix; the bot must touch nothing (DESIGN 1, 6)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest

from bot.cli import Environment, main
from bot.service import Actor
from commands.lab.twin import SSTP_APP_ID, HttpSysBinding, RrasTwin

from .conftest import LabSetup

OPERATOR = Actor(id="cli:operator", source="cli")


def remove_iis_binding(twin: RrasTwin) -> None:
    """Someone else removes the IIS https binding by hand (IIS Manager)."""
    twin.state.iis_bindings.clear()


def bind_other_certificate(twin: RrasTwin) -> None:
    """Someone binds the SSTP certificate on 0.0.0.0:443 with netsh, under SSTP's AppId."""
    s = twin.state
    sstp = next(c for c in s.certificates if c.sha256 == s.sha256_hash)
    s.ip_bindings = [b for b in s.ip_bindings if b.endpoint != "0.0.0.0:443"]
    s.ip_bindings.append(HttpSysBinding("0.0.0.0:443", sstp.thumbprint, SSTP_APP_ID))


def switch_sstp_certificate(twin: RrasTwin) -> None:
    """Someone points SSTP at another certificate of the store (Set-RemoteAccess by hand)."""
    s = twin.state
    other = next(c for c in s.certificates if c.sha256 != s.sha256_hash)
    s.sha256_hash, s.sha1_hash, s.remote_access_thumbprint = other.sha256, other.thumbprint, other.thumbprint


def stop_remoteaccess(twin: RrasTwin) -> None:
    svc = twin.state.services["RemoteAccess"]
    assert svc is not None
    svc.status = "Stopped"


DRIFTS: dict[str, Callable[[RrasTwin], None]] = {
    "iis binding removed": remove_iis_binding,
    "other certificate bound on 0.0.0.0:443": bind_other_certificate,
    "sstp certificate switched": switch_sstp_certificate,
    "remoteaccess stopped": stop_remoteaccess,
}


def change_behind_the_bots_back(twin: RrasTwin, change: Callable[[RrasTwin], None]) -> Any:
    with twin.lock:
        change(twin)
    return twin.copy_state()


@pytest.mark.parametrize("drift", sorted(DRIFTS))
def test_drift_between_check_and_execute_touches_nothing(lab_factory, drift: str):
    setup: LabSetup = lab_factory(["iis-binding"])
    server = setup.server("vpn-iis")
    twin = server.twin
    service = setup.service()

    [outcome] = service.check([service.config.server("vpn-iis")], OPERATOR)
    assert outcome.plan_id is not None and outcome.result.plan is not None
    plan_id = outcome.plan_id

    changed = change_behind_the_bots_back(twin, DRIFTS[drift])
    service.approve(plan_id, OPERATOR, authorised=True)
    server.endpoint.clear_log()
    fix = service.execute(plan_id, OPERATOR)

    assert fix.state == "FAILED"
    assert fix.error is not None and "changed" in fix.error and "nothing was touched" in fix.error
    assert fix.steps == [] and fix.after is None
    assert fix.before is not None  # the re-probe that saw the change
    # No fix script ran: the twin holds exactly the manual change, and the log shows one probe only.
    assert twin.actions == []
    assert twin.copy_state() == changed
    commands = [r.action for r in server.requests]
    assert commands.count("Create") == 1 and commands.count("Command") == 1 and commands.count("Delete") == 1

    # The record says so: state FAILED, and the audit trail ends with the refusal's reason.
    assert service.get_plan(plan_id).state == "FAILED"
    assert service.get_plan(plan_id).step_results == []
    trail = service.plan_audit(plan_id)
    assert [e.action for e in trail] == ["propose", "approve", "start", "fail"]
    assert trail[-1].details.get("reason") == "state changed"
    shown = setup.cli("history", "--plan", str(plan_id))
    assert shown.code == 0 and "FAILED" in shown.stdout and "state changed" in shown.stdout
    trail_json = setup.cli("history", "--plan", str(plan_id), "--json").json()
    assert trail_json[-1]["action"] == "fail" and trail_json[-1]["details"]["reason"] == "state changed"


def test_volatile_changes_are_not_drift(lab_factory):
    """Control: users connecting and events do not change the fingerprint; the plan runs."""
    setup: LabSetup = lab_factory(["iis-binding"])
    twin = setup.server("vpn-iis").twin
    service = setup.service()
    [outcome] = service.check([service.config.server("vpn-iis")], OPERATOR)
    assert outcome.plan_id is not None

    def users_come_and_go(t: RrasTwin) -> None:
        t.state.vpn_connections += 7

    change_behind_the_bots_back(twin, users_come_and_go)
    service.approve(outcome.plan_id, OPERATOR, authorised=True)
    fix = service.execute(outcome.plan_id, OPERATOR)
    assert fix.state == "SUCCEEDED", fix.error
    assert fix.after is not None and fix.after.status == "healthy"
    assert len(twin.plan_actions()) == len(outcome.result.plan.steps)


class ChangingInput(io.StringIO):
    """A terminal whose operator takes a while to answer: meanwhile someone changes the server."""

    def __init__(self, twin: RrasTwin, change: Callable[[RrasTwin], None]) -> None:
        super().__init__("y\n")
        self.twin, self.change = twin, change

    def isatty(self) -> bool:
        return True

    def readline(self, *args: Any) -> str:
        change_behind_the_bots_back(self.twin, self.change)
        return super().readline(*args)


def test_drift_while_the_cli_operator_reads_the_plan(lab_factory):
    setup: LabSetup = lab_factory(["iis-binding"])
    twin = setup.server("vpn-iis").twin
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, stdin=ChangingInput(twin, remove_iis_binding), environ={})
    code = main(["--config", str(setup.config_path), "fix", "vpn-iis", "--json"], env)
    assert code == 2, (out.getvalue(), err.getvalue())
    doc = json.loads(out.getvalue())
    assert doc["state"] == "FAILED" and doc["steps"] == [] and doc["after"] is None
    assert "changed since the plan was made" in err.getvalue()
    assert twin.actions == []
