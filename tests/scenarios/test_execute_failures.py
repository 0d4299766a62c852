"""A fix interrupted inside the bot (not on the server) must not leave its plan RUNNING."""

from __future__ import annotations

from typing import Any

import pytest

from bot.service import Actor
from commands.errors import PlanStateError
from storage.states import PlanState

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


@pytest.mark.slow
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


# -- a plan of the same server running in another process ----------------------------------------
# The in-process lock cannot see another process (`sstp-bot fix` beside the bot, a second bot on the
# same database); only the database's one-RUNNING-plan-per-server rule does. Here "another process"
# is simulated by starting plan 1 through the repository directly, without this process's lock.


def _two_approved_plans(setup: LabSetup) -> tuple[Any, str, int, int]:
    service = setup.service()
    service.start_poll = 0.02
    name = setup.name_of("iis-binding")
    server = service.config.server(name)
    [first] = service.check([server], OPERATOR)
    assert first.plan_id is not None
    service.approve(first.plan_id, OPERATOR, authorised=True)
    service.repo.transition(first.plan_id, PlanState.APPROVED, PlanState.RUNNING, actor="cli:other")
    [second] = service.check([server], OPERATOR)  # a RUNNING plan is not superseded by a new check
    assert second.plan_id is not None and service.get_plan(first.plan_id).state == "RUNNING"
    service.approve(second.plan_id, OPERATOR, authorised=True)
    setup.clear_logs()
    return service, name, first.plan_id, second.plan_id


def test_a_plan_running_in_another_process_is_waited_for_then_this_one_starts(lab_factory: Any) -> None:
    import threading
    import time

    setup: LabSetup = lab_factory(["iis-binding"])
    service, name, plan_1, plan_2 = _two_approved_plans(setup)
    fixes: list[Any] = []
    told: list[int] = []
    fixing = threading.Thread(target=lambda: fixes.append(service.execute(plan_2, OPERATOR, waiting=told.append)))
    fixing.start()
    _wait_for(lambda: told)  # it has looked, found plan 1 running, and said so
    time.sleep(0.2)  # several more looks (every 0.02 s) while plan 1 still runs
    assert told == [plan_1]  # said once, however many times it looked
    assert service.get_plan(plan_2).state == "APPROVED"  # waiting, not refused
    assert setup.server(name).requests == []  # and the server is not touched meanwhile

    service.repo.transition(plan_1, PlanState.RUNNING, PlanState.FAILED, actor="cli:other")  # it changed nothing
    fixing.join(60)
    [fix] = fixes
    assert fix.state == "SUCCEEDED" and fix.after is not None and fix.after.status == "healthy"
    starts = [a for a in service.plan_audit(plan_2) if a.action == "start"]
    assert [a.outcome for a in starts] == ["ok"]  # one start, no refusal per look


def test_a_plan_of_a_dead_runner_is_interrupted_and_no_longer_blocks(lab_factory: Any) -> None:
    import subprocess
    import sys

    from sqlalchemy import text

    from storage.engine import build_engine
    from storage.runner import current_runner

    setup: LabSetup = lab_factory(["iis-binding"])
    service, _name, plan_1, plan_2 = _two_approved_plans(setup)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    runner = " ".join(
        f"pid={gone.pid}" if part.startswith("pid=") else part for part in current_runner().split()
    )
    engine = build_engine(setup.db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE plans SET runner = :runner WHERE id = :id"), {"runner": runner, "id": plan_1})
    engine.dispose()

    fix = service.execute(plan_2, OPERATOR)
    assert service.get_plan(plan_1).state == "INTERRUPTED"  # never re-run
    assert fix.state == "SUCCEEDED"


def test_a_plan_still_running_elsewhere_after_the_wait_is_refused_and_nothing_is_touched(lab_factory: Any) -> None:
    setup: LabSetup = lab_factory(["iis-binding"])
    service, name, plan_1, plan_2 = _two_approved_plans(setup)
    service.start_wait = 0.3
    with pytest.raises(PlanStateError, match=f"plan {plan_1} is already running on {name}"):
        service.execute(plan_2, OPERATOR)
    assert service.get_plan(plan_2).state == "APPROVED"
    assert service.get_plan(plan_1).state == "RUNNING"
    assert setup.server(name).requests == []
    assert service.plan_audit(plan_2)[-1].outcome == "refused"


def test_a_failed_step_stays_the_reason_when_the_re_check_fails_too(lab_factory: Any) -> None:
    from commands.errors import RemoteError
    from commands.psrp import RemoteSession

    class FailingLate(RemoteSession):
        probes = 0

        def run(self, script: str, **params: Any) -> dict[str, Any]:
            if script == "restart_iis":
                raise RemoteError("script_failed", self.server.name, "iisreset failed")
            if script == "probe":
                FailingLate.probes += 1
                if FailingLate.probes == 3:  # the check's, the fix's own, then the re-check
                    raise RemoteError("timeout", self.server.name, "probe did not finish")
            return super().run(script, **params)

    setup: LabSetup = lab_factory(["iis-binding"])
    service = setup.service()
    service.session_factory = FailingLate
    [outcome] = service.check([service.config.server("vpn-iis")], OPERATOR)
    assert outcome.plan_id is not None
    service.approve(outcome.plan_id, OPERATOR, authorised=True)
    fix = service.execute(outcome.plan_id, OPERATOR)
    assert fix.state == "FAILED" and fix.after is None
    assert fix.error is not None and fix.error.startswith("Step 2 (restart_iis) failed: iisreset failed")
    assert fix.error.endswith("; the re-check failed: vpn-iis: probe did not finish")
