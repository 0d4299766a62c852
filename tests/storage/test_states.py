"""The approval state machine: every legal transition works, every other one is refused."""

from __future__ import annotations

import itertools

import pytest

from commands.errors import PlanStateError
from storage import LEGAL_TRANSITIONS, TERMINAL_STATES, NotFound, PlanState, Repository

from .conftest import FakeClock, add_plan, drive

LEGAL = sorted((a, b) for a, targets in LEGAL_TRANSITIONS.items() for b in targets)
ILLEGAL = sorted((a, b) for a, b in itertools.product(PlanState, PlanState) if b not in LEGAL_TRANSITIONS[a])


def test_the_table_is_design_section_6() -> None:
    assert LEGAL_TRANSITIONS[PlanState.PROPOSED] == {
        PlanState.APPROVED, PlanState.REJECTED, PlanState.EXPIRED, PlanState.SUPERSEDED}
    assert LEGAL_TRANSITIONS[PlanState.APPROVED] == {PlanState.RUNNING}
    assert LEGAL_TRANSITIONS[PlanState.RUNNING] == {PlanState.SUCCEEDED, PlanState.FAILED, PlanState.INTERRUPTED}
    assert set(TERMINAL_STATES) == set(PlanState) - {PlanState.PROPOSED, PlanState.APPROVED, PlanState.RUNNING}
    assert len(LEGAL) == 8 and len(ILLEGAL) == 81 - 8


@pytest.mark.parametrize(("source", "target"), LEGAL, ids=[f"{a}->{b}" for a, b in LEGAL])
def test_legal_transition(repo: Repository, clock: FakeClock, source: PlanState, target: PlanState) -> None:
    plan_id = add_plan(repo, clock)
    drive(repo, plan_id, source)
    clock.advance(seconds=30)
    plan = repo.transition(plan_id, source, target, actor="U0CCCC3", details={"note": "test"})
    assert plan.state == target
    assert repo.get_plan(plan_id).state == target
    if target in (PlanState.APPROVED, PlanState.REJECTED):
        assert plan.approver == "U0CCCC3" and plan.decided_at == clock()
    if target in TERMINAL_STATES:
        assert plan.finished_at == clock()
    else:
        assert plan.finished_at is None
    last = repo.plan_audit(plan_id)[-1]
    assert (last.actor, last.outcome, last.at) == ("U0CCCC3", "ok", clock())
    assert last.details == {"note": "test", "from": source.value, "to": target.value}


@pytest.mark.parametrize(("source", "target"), ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_illegal_transition_is_refused_before_the_database(
    repo: Repository, clock: FakeClock, source: PlanState, target: PlanState
) -> None:
    plan_id = add_plan(repo, clock)
    before = repo.plan_audit(plan_id)
    with pytest.raises(PlanStateError, match="not a legal transition") as caught:
        repo.transition(plan_id, source, target, actor="U0CCCC3")
    assert caught.value.plan_id == plan_id
    assert repo.get_plan(plan_id).state == PlanState.PROPOSED
    assert repo.plan_audit(plan_id) == before


def test_wrong_state_is_refused_with_the_actual_state_and_audited(repo: Repository, clock: FakeClock) -> None:
    plan_id = add_plan(repo, clock)
    with pytest.raises(PlanStateError, match="has not been approved") as caught:
        repo.transition(plan_id, PlanState.APPROVED, PlanState.RUNNING, actor="U0CCCC3")
    assert caught.value.state == "PROPOSED"
    repo.transition(plan_id, PlanState.PROPOSED, PlanState.REJECTED, actor="U0BBBB2")
    with pytest.raises(PlanStateError, match="rejected by U0BBBB2") as caught:
        repo.transition(plan_id, PlanState.PROPOSED, PlanState.APPROVED, actor="U0CCCC3")
    assert caught.value.state == "REJECTED"
    outcomes = [(e.action, e.actor, e.outcome) for e in repo.plan_audit(plan_id)]
    assert outcomes == [("propose", "U0AAAA1", "ok"), ("start", "U0CCCC3", "refused"),
                        ("reject", "U0BBBB2", "ok"), ("approve", "U0CCCC3", "refused")]


def test_unknown_plan(repo: Repository) -> None:
    with pytest.raises(NotFound, match="plan 42 not found"):
        repo.get_plan(42)
    with pytest.raises(NotFound):
        repo.transition(42, PlanState.PROPOSED, PlanState.APPROVED, actor="U0CCCC3")
    assert [e.outcome for e in repo.plan_audit(42)] == ["refused"]
