"""Property test: random sequences of plan operations agree with a plain model of DESIGN 6."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.errors import PlanStateError
from storage import LEGAL_TRANSITIONS, PlanState, Repository

from .conftest import FakeClock, add_plan

TTL = timedelta(minutes=10)
SERVERS = ("vpn01", "vpn02")
DECISIONS = {PlanState.APPROVED, PlanState.REJECTED}

legal_pairs = [(a, b) for a, targets in LEGAL_TRANSITIONS.items() for b in targets]
any_pair = st.tuples(st.sampled_from(list(PlanState)), st.sampled_from(list(PlanState)))
operation = st.one_of(
    st.tuples(st.just("plan"), st.sampled_from(SERVERS)),
    st.tuples(st.just("advance"), st.integers(0, 12)),
    st.tuples(st.just("move"), st.integers(0, 7), st.one_of(st.sampled_from(legal_pairs), any_pair)),
    st.tuples(st.just("expire")),
    # Start-up recovery, with every runner found dead (a crash) or alive (another process runs them).
    st.tuples(st.just("recover"), st.booleans()),
)


class Model:
    def __init__(self) -> None:
        self.plans: dict[int, tuple[str, PlanState, datetime]] = {}

    def set(self, plan_id: int, state: PlanState) -> None:
        server, _, expires = self.plans[plan_id]
        self.plans[plan_id] = (server, state, expires)

    def expected_move(self, plan_id: int, source: PlanState, target: PlanState, now: datetime) -> bool:
        """Apply a transition attempt to the model; True when it must succeed."""
        if target not in LEGAL_TRANSITIONS[source]:
            return False
        server, state, expires = self.plans[plan_id]
        if state != source:
            return False
        if source is PlanState.PROPOSED and target in DECISIONS and expires <= now:
            self.set(plan_id, PlanState.EXPIRED)
            return False
        if target is PlanState.RUNNING and any(
            s == server and st_ is PlanState.RUNNING for s, st_, _ in self.plans.values()
        ):
            return False
        self.set(plan_id, target)
        return True


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=25))
def test_random_operations_match_the_model(operations: list[tuple[Any, ...]]) -> None:
    clock = FakeClock()
    model = Model()
    with Repository("sqlite://", clock=clock) as repo:
        ids: list[int] = []
        for op in operations:
            if op[0] == "plan":
                for plan_id, (server, state, _) in model.plans.items():
                    if server == op[1] and state is PlanState.PROPOSED:
                        model.set(plan_id, PlanState.SUPERSEDED)
                plan_id = add_plan(repo, clock, op[1], ttl=TTL)
                model.plans[plan_id] = (op[1], PlanState.PROPOSED, clock() + TTL)
                ids.append(plan_id)
            elif op[0] == "advance":
                clock.advance(minutes=op[1])
            elif op[0] == "move" and ids:
                plan_id = ids[op[1] % len(ids)]
                source, target = op[2]
                should_succeed = model.expected_move(plan_id, source, target, clock())
                try:
                    repo.transition(plan_id, source, target, actor="U0TEST1")
                    assert should_succeed, (plan_id, source, target)
                except PlanStateError as exc:
                    assert not should_succeed, (plan_id, source, target, str(exc))
                    assert exc.state == model.plans[plan_id][1] or target not in LEGAL_TRANSITIONS[source]
            elif op[0] == "expire":
                due = sorted(p for p, (_, s, e) in model.plans.items() if s is PlanState.PROPOSED and e <= clock())
                for p in due:
                    model.set(p, PlanState.EXPIRED)
                assert repo.expire_due() == due
            elif op[0] == "recover":
                dead = op[1]
                running = sorted(p for p, (_, s, _) in model.plans.items() if s is PlanState.RUNNING)
                if dead:
                    for p in running:
                        model.set(p, PlanState.INTERRUPTED)
                marked = repo.recover_interrupted(is_dead=lambda _runner, dead=dead: dead)
                assert marked == (running if dead else [])
            for plan_id, (_, state, _) in model.plans.items():
                assert repo.get_plan(plan_id).state == state
        for server in SERVERS:
            running = [p for p in ids if repo.get_plan(p).server == server and repo.get_plan(p).state == "RUNNING"]
            assert len(running) <= 1
