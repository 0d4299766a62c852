"""`sstp-bot db interrupt --plan ID`: the way out for a plan left RUNNING by a bot whose host is gone.

Start-up recovery only interrupts plans of dead runners on its own host; without this command such a
plan would block every later fix of its server (one RUNNING plan per server).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from bot.service import Actor
from commands.errors import PlanStateError
from storage.engine import build_engine
from storage.runner import current_runner
from storage.states import PlanState

from .conftest import LabSetup

OPERATOR = Actor(id="cli:operator", source="cli")


def _running_plan(setup: LabSetup, runner: str | None) -> tuple[Any, int]:
    """A plan of vpn-iis left RUNNING by `runner` (None: this process)."""
    service = setup.service()
    service.start_wait = 0.2
    service.start_poll = 0.02
    [outcome] = service.check([service.config.server("vpn-iis")], OPERATOR)
    assert outcome.plan_id is not None
    service.approve(outcome.plan_id, OPERATOR, authorised=True)
    service.repo.transition(outcome.plan_id, PlanState.APPROVED, PlanState.RUNNING, actor="U0GONE")
    if runner is not None:
        engine = build_engine(setup.db_url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE plans SET runner = :r WHERE id = :id"), {"r": runner, "id": outcome.plan_id})
        engine.dispose()
    return service, outcome.plan_id


def _elsewhere() -> str:
    return " ".join("host=bot-host-gone" if p.startswith("host=") else p for p in current_runner().split())


def test_a_plan_of_a_host_that_is_gone_is_interrupted_with_yes_and_unblocks_the_server(lab_factory: Any) -> None:
    setup: LabSetup = lab_factory(["iis-binding"])
    service, plan_id = _running_plan(setup, _elsewhere())

    # Blocked: a new plan of the server cannot start while the stuck one is RUNNING.
    [again] = service.check([service.config.server("vpn-iis")], OPERATOR)
    assert again.plan_id is not None
    service.approve(again.plan_id, OPERATOR, authorised=True)
    with pytest.raises(PlanStateError, match=f"plan {plan_id} is already running"):
        service.execute(again.plan_id, OPERATOR)

    code, out, err = setup.cli("db", "interrupt", "--plan", str(plan_id))
    assert code == 2 and out == ""
    assert "pid" in err and "bot-host-gone" in err and "--yes" in err and "Nothing was changed" in err
    assert service.get_plan(plan_id).state == "RUNNING"
    assert service.plan_audit(plan_id)[-1].outcome == "refused"

    code, out, err = setup.cli("db", "interrupt", "--plan", str(plan_id), "--yes")
    assert code == 0, err
    assert f"Plan {plan_id} (vpn-iis) is now INTERRUPTED" in out and "sstp-bot check vpn-iis" in out
    assert service.get_plan(plan_id).state == "INTERRUPTED"
    last = service.plan_audit(plan_id)[-1]
    assert (last.action, last.outcome) == ("interrupt", "ok") and last.actor.startswith("cli:")
    assert last.details["runner"] == _elsewhere()

    # Never re-run, and no longer in the way: a fresh check's plan runs.
    [fresh] = service.check([service.config.server("vpn-iis")], OPERATOR)
    assert fresh.plan_id is not None
    service.approve(fresh.plan_id, OPERATOR, authorised=True)
    assert service.execute(fresh.plan_id, OPERATOR).state == "SUCCEEDED"
    assert service.get_plan(plan_id).state == "INTERRUPTED"


def test_a_plan_whose_runner_is_alive_here_is_never_interrupted(lab_factory: Any) -> None:
    setup: LabSetup = lab_factory(["iis-binding"])
    service, plan_id = _running_plan(setup, None)  # this very process runs it
    code, _out, err = setup.cli("db", "interrupt", "--plan", str(plan_id), "--yes")
    assert code == 2 and "is still running" in err and "alive" in err
    assert service.get_plan(plan_id).state == "RUNNING"


def test_only_running_plans_and_known_ids(lab_factory: Any) -> None:
    setup: LabSetup = lab_factory(["iis-binding"])
    service = setup.service()
    [outcome] = service.check([service.config.server("vpn-iis")], OPERATOR)
    assert outcome.plan_id is not None
    code, _out, err = setup.cli("db", "interrupt", "--plan", str(outcome.plan_id), "--yes")
    assert code == 2 and "has not been approved yet" in err
    assert service.get_plan(outcome.plan_id).state == "PROPOSED"
    assert service.plan_audit(outcome.plan_id)[-1].outcome == "refused"

    code, _out, err = setup.cli("db", "interrupt", "--plan", "999", "--yes")
    assert code == 2 and "plan 999 not found" in err
    code, _out, err = setup.cli("db", "interrupt")
    assert code == 3 and "--plan" in err
