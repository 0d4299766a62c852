"""Every scenario, end to end through the real stack: probe over PSRP -> engine -> plan -> fix -> re-check.

This is what makes the lab honest: the engine's plans run against the twin's Windows semantics.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from commands.clientview import start_client_view
from commands.engine import evaluate
from commands.executor import PlanExecutor, Timing
from commands.lab.lab import LAB_PASSWORD, Lab
from commands.lab.scenarios import load_scenario, scenario_names
from commands.psrp import RemoteSession

SINGLE = [n for n in scenario_names() if not load_scenario(n).is_fleet]


@pytest.fixture(scope="module")
def lab():
    with Lab(SINGLE) as lab:
        yield lab


def _ids(result) -> set[str]:
    return {f.id for f in result.findings if f.severity in ("critical", "warning")}


FAST = Timing(restart_timeout=30, poll_interval=0.05, first_poll=0.01)


def _check(session: RemoteSession, cfg):
    """A probe with the client view beside it, as the bot's check makes it (DESIGN 11)."""

    def now() -> datetime:
        return datetime.now(UTC)

    view = start_client_view(cfg, now)
    return evaluate(view.attach(session.probe()), cfg, now())


@pytest.mark.parametrize("scenario", SINGLE)
def test_scenario_findings_and_fix(lab, scenario):
    server = next(s for s in lab.servers.values() if s.spec.scenario == scenario)
    cfg = lab.server_config(server.name)
    with RemoteSession(cfg, LAB_PASSWORD) as session:
        before = _check(session, cfg)
        assert before.error_kind is None, before.error_message
        assert set(server.spec.expect) <= {f.id for f in before.findings}, _ids(before)
        if server.spec.fix_outcome is not None:
            return  # a RemoteAccess fault or DirectAccess: tests/scenarios/test_fix_faults.py
        if not server.spec.expect:
            assert _ids(before) == set()
            assert before.plan is None or not before.plan.steps
            return
        if not server.spec.fixable:
            assert before.plan is None or not before.plan.steps
            return
        assert before.plan is not None and before.plan.steps
        executor = PlanExecutor(session, timing=FAST)
        for step in before.plan.steps:
            result = executor.run_step({"action": step.action, "params": step.params}).to_json()
            assert result["ok"], (step.action, result)
        after = _check(session, cfg)
    assert _ids(after) == set(), [f.id for f in after.findings]


def test_the_fleet_scenario_expands_to_several_servers():
    fleet = load_scenario("fleet")
    assert fleet.is_fleet and len(fleet.servers) >= 5
    assert len({s.name for s in fleet.servers}) == len(fleet.servers)


def test_the_engine_plan_without_its_http_sys_deletes_fails_in_the_lab():
    with Lab(["iis-binding"]) as lab:
        cfg = lab.server_config("vpn-iis")
        with RemoteSession(cfg, LAB_PASSWORD) as session:
            before = evaluate(session.probe(), cfg, datetime.now(UTC))
            assert before.plan is not None
            actions = [s.action for s in before.plan.steps]
            assert "delete_httpsys_binding" in actions and actions[-1] == "bind_sstp_certificate"
            executor = PlanExecutor(session, timing=FAST)
            results = [
                executor.run_step({"action": step.action, "params": step.params}).to_json()
                for step in before.plan.steps
                if step.action != "delete_httpsys_binding"
            ]
            after = evaluate(session.probe(), cfg, datetime.now(UTC))
    assert results[-1]["ok"] is False and "delete it first" in results[-1]["detail"]
    assert "SSTP_HASH_MISMATCH" in _ids(after)


def test_every_finding_a_plan_can_fix_has_a_fixable_scenario():
    """Issue 3: scenario files for each fixable finding (each then goes unhealthy -> healthy through
    `fix` in tests/scenarios/test_fix.py)."""
    from commands.remediation import FIXABLE_IDS

    covered = {
        finding
        for name in scenario_names()
        for spec in load_scenario(name).servers
        if spec.fixable
        for finding in spec.expect
    }
    assert not FIXABLE_IDS - covered, sorted(FIXABLE_IDS - covered)
