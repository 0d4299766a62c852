"""Issue 14, items 1 and 12, with the lab (real WinRM/PSRP), the real Service and SQLite: the database
locked in the middle of a fix.

SQLite's busy timeout is shortened (200 ms) so a lock "longer than the busy timeout" takes a second
here, not a minute; the bot's retry budget is set per test.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from commands.lab import Lab
from commands.scripts import script_name
from storage import Repository
from tests.fakes.blockkit import all_text
from tests.fakes.harness import APPROVER, APPROVER_GROUP, OPERATOR
from tests.fakes.lab_stack import LabStack
from tests.fakes.slack_api import FakeSlackApi

SERVER = "vpn-iis"

pytestmark = pytest.mark.slow


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(["iis-binding"]) as lab:
        yield lab


def make_stack(lab: Lab, tmp_path: Path, slack_api: FakeSlackApi, retry_seconds: float) -> LabStack:
    stack = LabStack.build(lab, tmp_path, slack_api, approvers=(APPROVER, APPROVER_GROUP), two_person_rule=True)
    url = stack.config.database.url
    stack.service.repo.close()
    stack.service.repo = Repository(url, clock=stack.clock, write_retry_seconds=retry_seconds, busy_timeout_ms=200)
    return stack


class DatabaseLocker:
    """Takes SQLite's write lock from another connection (as a `VACUUM` or another process would)
    right after the lab ran `script`, for `seconds`."""

    def __init__(self, lab: Lab, db: Path, script: str, seconds: float) -> None:
        self.db, self.script, self.seconds = db, script, seconds
        self.locked_at: float | None = None
        self.released = threading.Event()
        endpoint = lab.servers[SERVER].endpoint
        inner: Callable[..., Any] = endpoint.executor

        def run(text: str, params: dict[str, Any], **options: Any) -> Any:
            result = inner(text, params, **options)
            if script_name(text) == self.script and self.locked_at is None:
                self._lock()
            return result

        endpoint.executor = run

    def _lock(self) -> None:
        conn = sqlite3.connect(self.db, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN EXCLUSIVE")
        self.locked_at = time.monotonic()

        def release() -> None:
            time.sleep(self.seconds)
            conn.execute("ROLLBACK")
            conn.close()
            self.released.set()

        threading.Thread(target=release, daemon=True).start()


def approve(stack: LabStack) -> tuple[int, str]:
    stack.harness.command(f"check {SERVER}", user=OPERATOR)
    plan_id, ts = stack.plan_from_last_report()
    return plan_id, ts


def test_a_lock_longer_than_the_busy_timeout_during_a_fix_is_waited_out(lab: Lab, tmp_path: Path, slack_api: FakeSlackApi) -> None:
    stack = make_stack(lab, tmp_path, slack_api, retry_seconds=10)
    try:
        plan_id, ts = approve(stack)
        first_step = stack.service.get_plan(plan_id).steps[0]["action"]
        locker = DatabaseLocker(lab, tmp_path / "sstp-bot.db", first_step, seconds=1.5)
        started = time.monotonic()
        stack.harness.click(plan_id, user=APPROVER, message_ts=ts)
        plan = stack.service.get_plan(plan_id)
        print(f"\n1.5 s lock (busy timeout 200 ms) after step 1: plan {plan.state} with "
              f"{len(plan.step_results)}/{len(plan.steps)} step results, fix took {time.monotonic() - started:.1f} s")
        assert locker.locked_at is not None
        assert plan.state == "SUCCEEDED"
        assert len(plan.step_results) == len(plan.steps)
        assert "Fix applied" in all_text(stack.updates_of(ts)[-1])
    finally:
        stack.close()


def test_a_lock_past_the_retry_budget_ends_the_plan_interrupted_and_frees_the_server(lab: Lab, tmp_path: Path, slack_api: FakeSlackApi) -> None:
    stack = make_stack(lab, tmp_path, slack_api, retry_seconds=0.5)
    try:
        plan_id, ts = approve(stack)
        steps = stack.service.get_plan(plan_id).steps
        locker = DatabaseLocker(lab, tmp_path / "sstp-bot.db", steps[0]["action"], seconds=2.0)
        stack.harness.click(plan_id, user=APPROVER, message_ts=ts)
        assert locker.locked_at is not None
        assert stack.fix_scripts(SERVER) == [steps[0]["action"]], "a step ran that the record could not show"
        # Meanwhile the card does not claim the fix failed: the record could not be written.
        assert "Fix failed" not in all_text(stack.updates_of(ts)[-1])
        assert locker.released.wait(5)
        # The database is back: the process releases its own plan (no "another process" to wait for).
        assert stack.service.repo.running_plan(SERVER) is None
        plan = stack.service.get_plan(plan_id)
        audit = stack.service.plan_audit(plan_id)
        print(f"\nlock past the retry budget: plan {plan.state}, {len(plan.step_results)} step result(s) kept; "
              f"reason: {audit[-1].details.get('reason')}")
        assert plan.state == "INTERRUPTED"
        assert len(plan.step_results) == 1 and plan.step_results[0]["action"] == steps[0]["action"]
        assert "could not record the result of step 1" in str(audit[-1].details.get("reason"))
        # The card reaches its final state.
        sweep = stack.harness.app.sstp.card_sweep
        assert sweep is not None
        sweep.sweep()
        assert "it will not be re-run" in all_text(stack.updates_of(ts)[-1])
        assert stack.service.repo.interrupted_cards() == []
        # And the server is free: a new check and fix of it runs at once.
        new_id, new_ts = approve(stack)
        assert new_id != plan_id
        stack.harness.click(new_id, user=APPROVER, message_ts=new_ts)
        assert stack.service.get_plan(new_id).state in ("SUCCEEDED", "FAILED")
        assert "Waiting for plan" not in "".join(all_text(u) for u in stack.updates_of(new_ts))
    finally:
        stack.close()


def test_a_probe_that_already_ran_is_kept_while_the_database_is_locked(lab: Lab, tmp_path: Path, slack_api: FakeSlackApi) -> None:
    stack = make_stack(lab, tmp_path, slack_api, retry_seconds=10)
    try:
        locker = DatabaseLocker(lab, tmp_path / "sstp-bot.db", "probe", seconds=1.5)
        stack.harness.command(f"check {SERVER}", user=OPERATOR)
        assert locker.locked_at is not None
        history = [h for h in stack.service.history(SERVER) if h.kind == "check"]
        print(f"\nprobe then a 1.5 s lock: {len(history)} check(s) recorded")
        assert len(history) == 1 and history[0].check is not None and history[0].check.status == "unhealthy"
    finally:
        stack.close()
