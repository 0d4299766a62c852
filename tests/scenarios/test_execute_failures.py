"""A fix interrupted inside the bot (not on the server) must not leave its plan RUNNING."""

from __future__ import annotations

from typing import Any

import pytest

from bot.service import Actor

from .conftest import LabSetup

OPERATOR = Actor(id="cli:operator", source="cli")


def test_an_exception_in_the_bot_during_a_fix_fails_the_plan_and_frees_the_server(lab_factory: Any) -> None:
    setup: LabSetup = lab_factory(["iis-binding"])
    service = setup.service()
    name = setup.name_of("iis-binding")
    [outcome] = service.check([service.config.server(name)], OPERATOR)
    assert outcome.plan_id is not None
    service.approve(outcome.plan_id, OPERATOR, authorised=True)

    def reader_went_away(index: int, total: int, step: dict[str, Any]) -> None:
        if index == 2:
            raise BrokenPipeError("stdout closed")

    with pytest.raises(BrokenPipeError):
        service.execute(outcome.plan_id, OPERATOR, progress=reader_went_away)

    plan = service.get_plan(outcome.plan_id)
    assert plan.state == "FAILED"
    assert service.plan_audit(outcome.plan_id)[-1].details["error"] == "internal error: BrokenPipeError"
    twin = setup.server(name).twin
    assert [action for action, _ in twin.actions] == ["remove_iis_binding"]  # stopped where it was interrupted

    # The server is not blocked: a new check proposes a new plan, and it runs to the end.
    [again] = service.check([service.config.server(name)], OPERATOR)
    assert again.plan_id is not None
    service.approve(again.plan_id, OPERATOR, authorised=True)
    fix = service.execute(again.plan_id, OPERATOR)
    assert fix.state == "SUCCEEDED" and fix.after is not None and fix.after.status == "healthy"


def _wait_for(condition: Any, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_plan_approved_while_another_fix_of_the_server_runs_queues_and_never_sticks(lab_factory: Any) -> None:
    """Check 2 is running when plan 1 is approved; it proposes plan 2, approved while plan 1 runs.
    Plan 2 waits for the server, then finds it changed: FAILED, never stuck in APPROVED."""
    import threading

    setup: LabSetup = lab_factory(["iis-binding"], latency=0.15)
    service = setup.service()
    name = setup.name_of("iis-binding")
    server = service.config.server(name)
    [first] = service.check([server], OPERATOR)
    assert first.plan_id is not None
    service.approve(first.plan_id, OPERATOR, authorised=True)

    second: list[Any] = []
    earlier = len(setup.server(name).requests)  # check 1's requests
    checking = threading.Thread(target=lambda: second.extend(service.check([server], OPERATOR)))
    checking.start()
    _wait_for(lambda: len(setup.server(name).requests) > earlier)  # check 2 holds the server now
    fixes: dict[int, Any] = {}
    fixing = threading.Thread(target=lambda: fixes.setdefault(1, service.execute(first.plan_id, OPERATOR)))
    fixing.start()
    checking.join(60)
    assert second and second[0].plan_id is not None
    plan_2 = second[0].plan_id
    assert service.get_plan(first.plan_id).state in ("APPROVED", "RUNNING")  # not superseded: it was approved
    _wait_for(lambda: service.get_plan(first.plan_id).state == "RUNNING")  # plan 1 holds the server

    service.approve(plan_2, OPERATOR, authorised=True)
    fixes[2] = service.execute(plan_2, OPERATOR)  # waits for plan 1, then sees the server it changed
    fixing.join(60)

    assert fixes[1].state == "SUCCEEDED"
    assert fixes[2].state == "FAILED" and fixes[2].steps == [] and "changed" in (fixes[2].error or "")
    assert service.get_plan(plan_2).state == "FAILED"
