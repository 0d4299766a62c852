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
