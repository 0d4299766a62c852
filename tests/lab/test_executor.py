"""The executor's waiting and rollback against the lab's RemoteAccess model, on a virtual clock.

The twin's service timings and the executor's sleep share one clock the test moves, so minutes of
StopPending take milliseconds; every script still goes through pypsrp to the lab (DESIGN 9 [2])."""

from __future__ import annotations

from typing import Any

import pytest

from commands.errors import RemoteError
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


class _ProbeFailsAfterAStep:
    """The lab session, except that the server cannot be probed once a step has failed (a probe that
    times out on a busy server): the rollback must still start RemoteAccess."""

    def __init__(self, session: RemoteSession) -> None:
        self.session = session
        self.probes = 0

    def run(self, script: str, **params: Any) -> dict[str, Any]:
        if script == "probe":
            self.probes += 1
            raise RemoteError("timeout", "vpn-slow-stop", "the probe did not answer within operation_timeout")
        return self.session.run(script, **params)


def test_a_rollback_that_cannot_probe_still_starts_remoteaccess(lab):
    """DESIGN 5: RemoteAccess is never left stopped by a plan. The wildcard binding deleted by the
    plan cannot be judged without a probe, but that must not keep the service stopped."""
    twin, _clock, timing = _setup(lab, "vpn-slow-stop", stop_seconds=30.0, restart_timeout=20.0)
    recorded: list[Any] = []
    with RemoteSession(lab.server_config("vpn-slow-stop"), LAB_PASSWORD) as real:
        session = _ProbeFailsAfterAStep(real)
        error = PlanExecutor(session, timing=timing, record=lambda i, r: recorded.append(r)).run([  # type: ignore[arg-type]
            {"action": "delete_httpsys_binding", "params": {"Endpoint": "0.0.0.0:443"}},
            {"action": "restart_remoteaccess", "params": {}},
        ])
    assert error is not None and "still StopPending" in error
    assert session.probes == 1
    assert [(r.action, r.ok, r.rollback) for r in recorded] == [
        ("delete_httpsys_binding", True, False),
        ("restart_remoteaccess", False, False),
        ("add_sstp_httpsys_binding", False, True),  # cannot re-add what it cannot see: said, not guessed
        ("restart_remoteaccess", True, True),
    ]
    assert "cannot read the server's state" in recorded[2].detail
    assert twin.copy_state().services["RemoteAccess"].status == "Running"


class _CutOff:
    """The lab session, except that the connection is lost when `script` (with `action`) is sent."""

    def __init__(self, session: RemoteSession, script: str, action: str | None = None) -> None:
        self.session, self.script, self.action = session, script, action

    def run(self, script: str, **params: Any) -> dict[str, Any]:
        if script == self.script and (self.action is None or params.get("Action") == self.action):
            raise RemoteError("unreachable", "vpn-renewal", "the connection was reset")
        return self.session.run(script, **params)


@pytest.mark.parametrize(("script", "action", "changed"), [
    ("set_sstp_certificate", None, True),  # Set-RemoteAccess may have run before the answer was lost
    ("control_remoteaccess", "Stop", True),  # the certificate is set; the Stop may have reached the server
    ("control_remoteaccess", "Start", True),  # RemoteAccess was stopped
])
def test_a_bind_cut_short_by_the_connection_says_whether_it_changed_the_server(script, action, changed):
    from datetime import UTC, datetime

    from commands.engine import evaluate

    with Lab(["renewal-not-bound"]) as lab:
        name = next(iter(lab.servers))
        config = lab.server_config(name)
        _twin, _clock, timing = _setup(lab, name, stop_seconds=1.0)
        with RemoteSession(config, LAB_PASSWORD) as real:
            plan = evaluate(real.probe(), config, datetime.now(UTC)).plan
            assert plan is not None
            bind = next(s for s in plan.steps if s.action == "bind_sstp_certificate")
            result = PlanExecutor(_CutOff(real, script, action), timing=timing).run_step(  # type: ignore[arg-type]
                {"action": "bind_sstp_certificate", "params": dict(bind.params)})
    assert result.ok is False and result.changed is changed
    assert "the connection was reset" in result.detail


class _StateLostAfterStop(_CutOff):
    """The server stops answering remoteaccess_state once Stop was sent (a StepFailed, not a lost connection)."""

    def __init__(self, session: RemoteSession) -> None:
        super().__init__(session, "")
        self.stopped = False

    def run(self, script: str, **params: Any) -> dict[str, Any]:
        if script == "control_remoteaccess" and params.get("Action") == "Stop":
            self.stopped = True
        if script == "remoteaccess_state" and self.stopped:
            return {"ok": False, "changed": False, "detail": "Get-Service failed (test)", "exit_code": None}
        return self.session.run(script, **params)


def test_a_restart_that_cannot_read_the_state_after_stop_says_it_changed_the_server(lab):
    _twin, _clock, timing = _setup(lab, "vpn-slow-stop", stop_seconds=1.0)
    with RemoteSession(lab.server_config("vpn-slow-stop"), LAB_PASSWORD) as real:
        session = _StateLostAfterStop(real)
        result = PlanExecutor(session, timing=timing).run_step({"action": "restart_remoteaccess", "params": {}})  # type: ignore[arg-type]
    assert session.stopped and result.ok is False
    assert result.changed is True  # RemoteAccess was stopped: VPN users were dropped


def test_a_wildcard_delete_cut_short_is_rolled_back_like_a_done_one(lab):
    """The delete may have run before its answer was lost: the rollback re-adds the binding if it is
    missing (and only then)."""
    _twin, _clock, timing = _setup(lab, "vpn-slow-stop", stop_seconds=1.0)
    twin = lab.servers["vpn-slow-stop"].twin

    class DeletedThenLost(_CutOff):
        def run(self, script: str, **params: Any) -> dict[str, Any]:
            if script == "delete_httpsys_binding":
                self.session.run(script, **params)  # it ran on the server...
                raise RemoteError("unreachable", "vpn-slow-stop", "the connection was reset")  # ...the answer was lost
            return self.session.run(script, **params)

    recorded: list[Any] = []
    with RemoteSession(lab.server_config("vpn-slow-stop"), LAB_PASSWORD) as real:
        error = PlanExecutor(DeletedThenLost(real, ""), timing=timing, record=lambda i, r: recorded.append(r)).run(  # type: ignore[arg-type]
            [{"action": "delete_httpsys_binding", "params": {"Endpoint": "0.0.0.0:443"}},
             {"action": "restart_remoteaccess", "params": {}}])
    assert error is not None
    assert [(r.action, r.ok, r.changed, r.rollback) for r in recorded] == [
        ("delete_httpsys_binding", False, True, False), ("add_sstp_httpsys_binding", True, True, True)]
    endpoints = {b.endpoint for b in twin.copy_state().ip_bindings}
    assert "0.0.0.0:443" in endpoints
