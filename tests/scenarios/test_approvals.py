"""Approvals through `bot.service` against the lab (DESIGN 6): exactly once, and never re-run after a
crash. Who may approve and when (two-person rule, approvers, expiry, superseded plans) is the approval
contract, tested outside-in through Slack: tests/contract_slack/test_approvals.py."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from bot.service import Actor, Service
from commands.errors import PlanStateError
from storage.states import PlanState

from .conftest import (
    APPROVERS,
    SLACK_APPROVER,
    SLACK_REQUESTER,
    LabSetup,
)

THIRD_APPROVER = Actor(id="UAPPROVE4", source="slack")


def slack_service(setup: LabSetup, clock: Any = None) -> Service:
    return setup.service(
        clock=clock,
        approvers=(*APPROVERS, THIRD_APPROVER.id),
        two_person_rule=True,
        plan_ttl_minutes=15,
    )


def propose(service: Service, name: str = "vpn-iis", actor: Actor = SLACK_REQUESTER) -> int:
    [outcome] = service.check([service.config.server(name)], actor)
    assert outcome.plan_id is not None, outcome.result.findings
    return outcome.plan_id


def audit_outcomes(service: Service, plan_id: int) -> list[tuple[str, str, str]]:
    return [(e.actor, e.action, e.outcome) for e in service.plan_audit(plan_id)]


@pytest.fixture
def setup(lab_factory) -> LabSetup:
    return lab_factory(["iis-binding"])


def test_twenty_concurrent_approve_and_execute_run_the_plan_once(setup: LabSetup):
    service = slack_service(setup)
    plan_id = propose(service)
    steps = len(service.get_plan(plan_id).steps)
    server = setup.server("vpn-iis")
    server.endpoint.clear_log()

    actors = [SLACK_APPROVER, THIRD_APPROVER]
    barrier = threading.Barrier(20)
    results: list[tuple[str, str]] = []
    lock = threading.Lock()

    def click(i: int) -> None:
        actor = actors[i % 2]
        barrier.wait()
        outcome = []
        try:
            service.approve(plan_id, actor, authorised=True)
            outcome.append("approved")
        except PlanStateError:
            outcome.append("approve refused")
        try:
            fix = service.execute(plan_id, actor)
            outcome.append(f"ran: {fix.state}")
        except PlanStateError:
            outcome.append("execute refused")
        with lock:
            results.append(tuple(outcome))  # type: ignore[arg-type]

    threads = [threading.Thread(target=click, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 20, "a thread died with an unexpected error"

    counts = Counter(part for outcome in results for part in outcome)
    assert counts["approved"] == 1 and counts["approve refused"] == 19
    assert counts["ran: SUCCEEDED"] == 1 and counts["execute refused"] == 19
    # Exactly one execution on the server: one pool, probe + steps + re-probe, each script once.
    actions = Counter(r.action for r in server.requests)
    assert actions["Create"] == 1 and actions["Command"] >= steps + 2  # sequences run several pipelines
    assert len(server.twin.plan_actions()) == steps
    plan = service.get_plan(plan_id)
    assert plan.state == "SUCCEEDED" and len(plan.step_results) == steps
    ok = Counter(a for _, a, o in audit_outcomes(service, plan_id) if o == "ok")
    assert ok["approve"] == 1 and ok["start"] == 1 and ok["succeed"] == 1 and ok["step"] == steps
    refused = Counter(a for _, a, o in audit_outcomes(service, plan_id) if o == "refused")
    assert refused["approve"] == 19 and refused["start"] == 19  # every refused click is audited


def test_a_plan_left_running_by_a_crash_is_interrupted_never_rerun(setup: LabSetup, monkeypatch: pytest.MonkeyPatch):
    service = slack_service(setup)
    plan_id = propose(service)
    service.approve(plan_id, SLACK_APPROVER, authorised=True)
    # The bot dies right after starting the plan (RUNNING recorded, no step run).
    service.repo.transition(plan_id, PlanState.APPROVED, PlanState.RUNNING, actor=SLACK_APPROVER.id)
    twin = setup.server("vpn-iis").twin
    # ...and is gone (here its runner is this test process: say it is dead).
    monkeypatch.setattr("storage.repository.runner_is_dead", lambda _runner: True)

    # The next start of the bot (any CLI command that builds the service) marks it INTERRUPTED.
    assert setup.cli("check", "vpn-iis", "--json").code == 1
    assert service.get_plan(plan_id).state == "INTERRUPTED"
    trail = setup.cli("history", "--plan", str(plan_id), "--json").json()
    assert trail[-1]["action"] == "interrupt" and trail[-1]["actor"] == "system"
    with pytest.raises(PlanStateError, match="interrupted"):
        service.execute(plan_id, SLACK_APPROVER)
    assert twin.actions == []  # never re-run automatically
    # A new fix of the server is not blocked by the dead plan.
    run = setup.cli("fix", "vpn-iis", "--yes", "--json")
    assert run.code == 0 and run.json()["plan_id"] != plan_id
