"""The executor's waiting and rollback against the lab's RemoteAccess model, on a virtual clock.

The twin's service timings and the executor's sleep share one clock the test moves, so minutes of
StopPending take milliseconds; every script still goes through pypsrp to the lab (DESIGN 9 [2])."""

from __future__ import annotations

from typing import Any

import pytest

from commands.executor import PlanExecutor, Timing
from commands.lab.lab import LAB_PASSWORD, Lab
from commands.psrp import RemoteSession


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def lab():
    with Lab(["remoteaccess-slow-stop", "remoteaccess-stopped"]) as lab:
        yield lab


def _setup(lab: Lab, name: str, *, stop_seconds: float, restart_timeout: float = 300.0) -> tuple[Any, VirtualClock, Timing]:
    clock = VirtualClock()
    twin = lab.servers[name].twin
    twin.monotonic = clock
    twin.state.remote_access.stop_seconds = stop_seconds
    twin.state.remote_access.start_seconds = 5.0
    timing = Timing(restart_timeout=restart_timeout, sleep=clock.sleep, monotonic=clock)
    return twin, clock, timing


def test_a_long_stop_pending_is_waited_for_then_started(lab):
    twin, clock, timing = _setup(lab, "vpn-slow-stop", stop_seconds=30.0)
    with RemoteSession(lab.server_config("vpn-slow-stop"), LAB_PASSWORD) as session:
        result = PlanExecutor(session, timing=timing).run_step({"action": "restart_remoteaccess", "params": {}})
    assert result.ok, result.detail
    assert twin.remoteaccess_history == ["StopPending", "Stopped", "StartPending", "Running"]
    assert clock.now - 1000.0 >= 35.0  # it really waited out the stop and the start
    # Polls back off from 0.25 s to the 2 s interval, never longer.
    assert clock.sleeps[0] == 0.25 and max(clock.sleeps) == 2.0
    assert twin.copy_state().services["RemoteAccess"].status == "Running"


def test_a_stop_longer_than_the_deadline_fails_the_step_and_the_rollback_starts_it(lab):
    """The old script abandoned a StopPending service at its deadline and left it stopped. Now the
    step fails at restart_timeout_seconds, and the rollback waits for Stopped and starts it."""
    twin, _clock, timing = _setup(lab, "vpn-slow-stop", stop_seconds=30.0, restart_timeout=20.0)
    recorded: list[tuple[int, Any]] = []
    with RemoteSession(lab.server_config("vpn-slow-stop"), LAB_PASSWORD) as session:
        error = PlanExecutor(session, timing=timing, record=lambda i, r: recorded.append((i, r))).run(
            [{"action": "restart_remoteaccess", "params": {}}])
    assert error is not None and "still StopPending" in error
    assert [(r.action, r.ok, r.rollback) for _, r in recorded] == [
        ("restart_remoteaccess", False, False), ("restart_remoteaccess", True, True)]
    assert twin.copy_state().services["RemoteAccess"].status == "Running"
    assert twin.remoteaccess_history[-1] == "Running"


def test_a_stopped_remoteaccess_is_only_started(lab):
    twin, _clock, timing = _setup(lab, "vpn-stopped", stop_seconds=50.0)
    with RemoteSession(lab.server_config("vpn-stopped"), LAB_PASSWORD) as session:
        result = PlanExecutor(session, timing=timing).run_step({"action": "restart_remoteaccess", "params": {}})
    assert result.ok, result.detail
    assert [p["Action"] for a, p in twin.actions if a == "control_remoteaccess"] == ["Start"]
    assert twin.remoteaccess_history == ["StartPending", "Running"]
