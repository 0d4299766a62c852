"""Expiry and supersession, driven by a fake clock."""

from __future__ import annotations

import pytest

from commands.errors import PlanStateError
from storage import PlanState, Repository

from .conftest import TTL, FakeClock, add_plan


def test_expire_due_expires_only_plans_whose_time_is_up(repo: Repository, clock: FakeClock) -> None:
    early = add_plan(repo, clock)
    clock.advance(minutes=5)
    late = add_plan(repo, clock, "vpn02")
    assert repo.expire_due() == []
    clock.advance(minutes=10)  # exactly `early`'s expiry: expires_at <= now
    assert repo.expire_due() == [early]
    assert repo.expire_due() == []
    plan = repo.get_plan(early)
    assert plan.state == PlanState.EXPIRED and plan.finished_at == clock()
    assert repo.get_plan(late).state == PlanState.PROPOSED
    last = repo.plan_audit(early)[-1]
    assert (last.action, last.actor, last.outcome) == ("expire", "system", "ok")
    with pytest.raises(PlanStateError, match="expired") as caught:
        repo.transition(early, PlanState.PROPOSED, PlanState.APPROVED, actor="U0BBBB2")
    assert caught.value.state == "EXPIRED"


def test_approving_a_plan_past_its_ttl_is_refused_even_before_the_sweep(
    repo: Repository, clock: FakeClock
) -> None:
    plan_id = add_plan(repo, clock)
    clock.advance(seconds=TTL.total_seconds() - 1)
    clock.advance(seconds=1)  # now == expires_at
    with pytest.raises(PlanStateError, match=f"plan {plan_id} expired at 2026-11-25T12:15:00Z") as caught:
        repo.transition(plan_id, PlanState.PROPOSED, PlanState.APPROVED, actor="U0BBBB2")
    assert caught.value.state == "EXPIRED"
    assert repo.get_plan(plan_id).state == PlanState.EXPIRED
    trail = [(e.action, e.actor, e.outcome) for e in repo.plan_audit(plan_id)]
    assert trail == [("propose", "U0AAAA1", "ok"), ("expire", "system", "ok"), ("approve", "U0BBBB2", "refused")]
    with pytest.raises(PlanStateError):
        repo.transition(plan_id, PlanState.PROPOSED, PlanState.REJECTED, actor="U0BBBB2")


def test_a_second_before_expiry_approval_works(repo: Repository, clock: FakeClock) -> None:
    plan_id = add_plan(repo, clock)
    clock.advance(seconds=TTL.total_seconds() - 1)
    assert repo.transition(plan_id, PlanState.PROPOSED, PlanState.APPROVED, actor="U0BBBB2").state == "APPROVED"
    clock.advance(hours=1)
    assert repo.expire_due() == []  # approved plans do not expire
    assert repo.transition(plan_id, PlanState.APPROVED, PlanState.RUNNING, actor="system").state == "RUNNING"


def test_a_newer_plan_supersedes_older_proposals_of_the_same_server(repo: Repository, clock: FakeClock) -> None:
    old = add_plan(repo, clock)
    other = add_plan(repo, clock, "vpn02")
    approved = add_plan(repo, clock, "vpn03")
    repo.transition(approved, PlanState.PROPOSED, PlanState.APPROVED, actor="U0BBBB2")
    clock.advance(minutes=3)
    new = add_plan(repo, clock)
    newer_vpn03 = add_plan(repo, clock, "vpn03")

    assert repo.get_plan(old).state == PlanState.SUPERSEDED
    assert repo.get_plan(old).finished_at == clock()
    assert repo.get_plan(new).state == PlanState.PROPOSED
    assert repo.get_plan(other).state == PlanState.PROPOSED  # another server
    assert repo.get_plan(approved).state == PlanState.APPROVED  # only proposals are superseded
    last = repo.plan_audit(old)[-1]
    assert (last.action, last.actor, last.outcome) == ("supersede", "system", "ok")
    assert last.details["superseded_by_check"] == repo.get_plan(new).check_id  # the check that made it
    with pytest.raises(PlanStateError, match="superseded by a newer check of vpn01") as caught:
        repo.transition(old, PlanState.PROPOSED, PlanState.APPROVED, actor="U0BBBB2")
    assert caught.value.state == "SUPERSEDED"
    assert repo.expire_due() == []
    clock.advance(minutes=15)
    assert sorted(repo.expire_due()) == sorted([other, new, newer_vpn03])
