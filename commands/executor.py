"""Carry out a plan's steps with the short primitives; the waiting and the rollback live here (DESIGN 5, 9 [2]).

No PowerShell runs in this project's tests, so what is hard to get right on Windows (waiting for a
service, deadlines, putting things back) is done in Python, where the lab's RemoteAccess model
exercises it (DESIGN 9 [2], DOMAIN 14):

- `restart_remoteaccess`: `control_remoteaccess Stop`, poll `remoteaccess_state` until `Stopped` (a
  slow `StopPending` is waited for, never abandoned), `control_remoteaccess Start`, poll until
  `Running` with SSTP's URL registered, all within the server's `restart_timeout_seconds`. Each poll is
  one short PSRP call, so no call outlasts `operation_timeout` and nothing is left running in a WinRM
  shell that is about to close (whose job object would end it, DOMAIN 14).
- `bind_sstp_certificate(thumbprint)`: `set_sstp_certificate` (which answers "already configured",
  unchanged, for the certificate SSTP uses, DirectAccess or not), the restart above, then
  `add_sstp_httpsys_binding` for each wildcard endpoint still without a binding, then a last look.
- Never worse off (DESIGN 5 [2]): after a failed step, every wildcard binding the plan deleted that is
  still missing is re-added with the certificate SSTP is configured with at that moment, and
  RemoteAccess is started if it is stopped. Both are recorded as steps of the plan (`rollback`).

The clock and the sleep are injected, so tests run the same code fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from commands.errors import RemoteError

#: The wildcard endpoints SSTP binds in HTTP.sys (DOMAIN 0); a plan deletes them before binding.
WILDCARD_HOSTS = ("0.0.0.0", "[::]")
#: Actions that stop or start RemoteAccess: a plan holding one must not leave it stopped.
RESTARTING_ACTIONS = frozenset({"bind_sstp_certificate", "restart_remoteaccess"})


@dataclass
class StepResult:
    """The result of one plan step (or of a rollback step the executor added)."""

    action: str
    ok: bool
    changed: bool
    detail: str
    exit_code: int | None = None
    rollback: bool = False

    def to_json(self) -> dict[str, Any]:
        """The `fix --json` step shape of DESIGN 7; a rollback step's detail starts with "rollback: "."""
        return {"action": self.action, "ok": self.ok, "changed": self.changed, "detail": self.detail}


class StepSession(Protocol):
    """What the executor needs of a remote session (`commands.psrp.RemoteSession`)."""

    def run(self, script: str, **params: Any) -> dict[str, Any]: ...


@dataclass
class Timing:
    """How the executor waits. Polls start at `first_poll` seconds and double up to `poll_interval`."""

    restart_timeout: float = 300.0
    poll_interval: float = 2.0
    first_poll: float = 0.25
    #: After RemoteAccess is Running, how long SSTP may take to register its URL (AOVPNTOOLS allows
    #: 60 s for the port, DOMAIN 14).
    registration_grace: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep)
    monotonic: Callable[[], float] = field(default=time.monotonic)


class StepFailed(Exception):
    """A sequence step could not do its job; the message says why."""

    def __init__(self, detail: str, changed: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.changed = changed


#: Called after each step (its number counted from 1, its result), to record it.
RecordCallback = Callable[[int, StepResult], None]
#: Called before each planned step: (step number counted from 1, number of steps, the step).
ProgressCallback = Callable[[int, int, dict[str, Any]], None]


class PlanExecutor:
    """Runs one plan's steps on one open session."""

    def __init__(self, session: StepSession, *, timing: Timing | None = None, record: RecordCallback | None = None) -> None:
        self.session = session
        self.timing = timing or Timing()
        self._record = record
        self.results: list[StepResult] = []

    # --- the plan ---------------------------------------------------------------------------------

    def run(self, steps: Sequence[dict[str, Any]], progress: ProgressCallback | None = None) -> str | None:
        """Run `steps` in order; stop at the first failure and roll back. Returns the error, or None."""
        deleted: list[str] = []
        for index, step in enumerate(steps, start=1):
            if progress is not None:
                progress(index, len(steps), step)
            result = self.run_step(step)
            self._add(result)
            params = dict(step.get("params") or {})
            if step["action"] == "delete_httpsys_binding" and result.changed and _is_wildcard(str(params.get("Endpoint", ""))):
                deleted.append(str(params["Endpoint"]))
            if not result.ok:
                error = f"Step {index} ({step['action']}) failed: {result.detail}"
                restarting = any(s["action"] in RESTARTING_ACTIONS for s in steps)
                self.roll_back(deleted, start_remoteaccess=restarting)
                return error
        return None

    def _add(self, result: StepResult) -> None:
        self.results.append(result)
        if self._record is not None:
            self._record(len(self.results), result)

    def run_step(self, step: dict[str, Any]) -> StepResult:
        """One plan step: a script of the same name, or one of the two sequences."""
        action = str(step["action"])
        params = dict(step.get("params") or {})
        try:
            if action == "bind_sstp_certificate":
                return self._bind(str(params["Thumbprint"]))
            if action == "restart_remoteaccess":
                return self._restart_step()
            output = self.session.run(action, **params)
        except StepFailed as exc:
            return StepResult(action, False, exc.changed, exc.detail)
        except RemoteError as exc:
            # The script was sent: it may have run on the server before the answer was lost. So the
            # step counts as changed (a wildcard binding it deleted is re-added by the rollback, which
            # re-adds only what is missing).
            return StepResult(action, False, True, f"{exc.message} (the server may have been changed)")
        return _result(action, output)

    # --- never worse off (DESIGN 5 [2]) -----------------------------------------------------------

    def roll_back(self, deleted: Sequence[str], *, start_remoteaccess: bool) -> None:
        """Re-add deleted wildcard bindings still missing; start RemoteAccess if it is stopped.

        The two parts stand alone: a probe that fails (so the bindings cannot be judged) still leaves
        RemoteAccess to be started, since it is never left stopped by a plan (DESIGN 5)."""
        status: str | None = None  # RemoteAccess's status, when a read of the server gave it
        if deleted:
            try:
                snapshot = self._look()
            except (RemoteError, StepFailed) as exc:
                self._add(StepResult("add_sstp_httpsys_binding", False, False,
                                     f"rollback: cannot read the server's state: {_detail(exc)}", rollback=True))
            else:
                self._re_add(deleted, snapshot)
                found = ((snapshot.get("services") or {}).get("RemoteAccess") or {}).get("status")
                status = found if isinstance(found, str) else None
        if not start_remoteaccess:
            return
        if status is None:
            try:
                status = self._state()["status"]
            except (RemoteError, StepFailed):
                status = None  # unknown: the restart sequence reads it again, and says why when it cannot
        if status == "Running":
            return
        try:
            notes = self._restart(stop_first=False)
            result = StepResult("restart_remoteaccess", True, True, "rollback: " + "; ".join(notes), rollback=True)
        except StepFailed as exc:
            result = StepResult("restart_remoteaccess", False, exc.changed, f"rollback: {exc.detail}", rollback=True)
        except RemoteError as exc:
            result = StepResult("restart_remoteaccess", False, False, f"rollback: {exc.message}", rollback=True)
        self._add(result)

    def _re_add(self, deleted: Sequence[str], snapshot: dict[str, Any]) -> None:
        """Re-add each deleted wildcard binding the snapshot no longer shows, with SSTP's certificate."""
        thumbprint = _configured_thumbprint(snapshot)
        present = _wildcard_bindings(snapshot)
        for endpoint in deleted:
            if endpoint.lower() in present:
                continue
            if thumbprint is None:
                self._add(StepResult("add_sstp_httpsys_binding", False, False,
                                     f"rollback: cannot re-add {endpoint}: SSTP's certificate is unknown", rollback=True))
                continue
            try:
                output = self.session.run("add_sstp_httpsys_binding", Endpoint=endpoint, Thumbprint=thumbprint)
                result = _result("add_sstp_httpsys_binding", output)
            except RemoteError as exc:
                result = StepResult("add_sstp_httpsys_binding", False, False, exc.message)
            result.rollback = True
            result.detail = f"rollback: {result.detail}"
            self._add(result)

    # --- the sequences ----------------------------------------------------------------------------

    def _restart_step(self) -> StepResult:
        notes = self._restart(stop_first=True)
        return StepResult("restart_remoteaccess", True, True, "; ".join(notes))

    def _bind(self, thumbprint: str) -> StepResult:
        notes: list[str] = []
        try:
            return self._bind_sequence(thumbprint, notes)
        except RemoteError as exc:
            # Cut short by the connection: from Set-RemoteAccess on, every call may have run before
            # the answer was lost, so the step says changed.
            raise StepFailed("; ".join([*notes, exc.message]), True) from None

    def _bind_sequence(self, thumbprint: str, notes: list[str]) -> StepResult:
        output = self.session.run("set_sstp_certificate", Thumbprint=thumbprint)
        if not output.get("ok"):
            raise StepFailed(str(output.get("detail", "set_sstp_certificate failed")), bool(output.get("changed")))
        notes.append(str(output.get("detail", "")))
        changed = bool(output.get("changed"))
        if changed or _bind_problems(self._look(), thumbprint):
            try:
                notes.extend(self._restart(stop_first=True))
            except StepFailed as exc:
                raise StepFailed("; ".join([*notes, exc.detail]), True) from None
            changed = True
        else:
            notes.append("already bound and registered; no restart")
        # RRAS creates its wildcard bindings only where none exist (DOMAIN 0); one still missing after
        # the restart is added the KB947027 way.
        snapshot = self._look()
        present = _wildcard_bindings(snapshot)
        port = _port(snapshot)
        for host in WILDCARD_HOSTS:
            endpoint = f"{host}:{port}"
            if endpoint.lower() in present:
                continue
            added = self.session.run("add_sstp_httpsys_binding", Endpoint=endpoint, Thumbprint=thumbprint)
            notes.append(str(added.get("detail", "")))
            if not added.get("ok"):
                raise StepFailed("; ".join(notes), True)
            changed = True
            snapshot = self._look()
        problems = _bind_problems(snapshot, thumbprint)
        if problems:
            raise StepFailed("; ".join([*notes, "still wrong: " + "; ".join(problems)]), changed)
        notes.append(f"certificate {thumbprint} bound on the wildcard endpoints")
        return StepResult("bind_sstp_certificate", True, changed, "; ".join(n for n in notes if n))

    def _restart(self, *, stop_first: bool) -> list[str]:
        """Stop (when asked and not stopped), wait for Stopped, start, wait for Running + registered."""
        notes: list[str] = []
        touched = [False]
        try:
            return self._restart_sequence(stop_first, notes, touched)
        except RemoteError as exc:
            # Cut short by the connection: once Stop or Start was sent, the service may have changed.
            raise StepFailed("; ".join([*notes, exc.message]), touched[0]) from None
        except StepFailed as exc:
            # However it failed afterwards (a state that cannot be read, a deadline), a sent Stop or
            # Start has changed the service: VPN users were dropped.
            raise StepFailed(exc.detail, exc.changed or touched[0]) from None

    def _restart_sequence(self, stop_first: bool, notes: list[str], touched: list[bool]) -> list[str]:
        t = self.timing
        deadline = t.monotonic() + t.restart_timeout
        state = self._state()
        if stop_first and state["status"] not in ("Stopped", "StopPending"):
            touched[0] = True
            stopped = self.session.run("control_remoteaccess", Action="Stop")
            if not stopped.get("ok"):
                raise StepFailed(f"could not stop RemoteAccess: {stopped.get('detail')}", False)
            notes.append("RemoteAccess stopping (VPN users dropped)")
            state = self._state()
        if stop_first or state["status"] not in ("Running", "StartPending"):
            # DOMAIN 14: a service found StopPending is still stopping: wait for Stopped, then start it.
            waited = self._wait(lambda s: s["status"] == "Stopped", deadline, state)
            if waited["status"] != "Stopped":
                raise StepFailed(
                    f"RemoteAccess is still {waited['status']} after {t.restart_timeout:g} s "
                    "(restart_timeout_seconds)", True)
            touched[0] = True
            started = self.session.run("control_remoteaccess", Action="Start")
            if not started.get("ok"):
                raise StepFailed(f"could not start RemoteAccess: {started.get('detail')}", True)
            notes.append("RemoteAccess starting")

        def up(s: dict[str, Any]) -> bool:
            return s["status"] == "Running" or s["status"] == "Stopped"

        state = self._wait(up, deadline, self._state())
        if state["status"] == "Stopped":
            raise StepFailed("RemoteAccess stopped again after it was started: see the System event log", True)
        if state["status"] != "Running":
            raise StepFailed(f"RemoteAccess is still {state['status']} after {t.restart_timeout:g} s "
                             "(restart_timeout_seconds)", True)
        if state.get("sstp_registered") is False:
            grace = min(deadline, t.monotonic() + t.registration_grace)
            state = self._wait(lambda s: s.get("sstp_registered") is not False or s["status"] != "Running", grace, state)
            if state.get("sstp_registered") is False:
                raise StepFailed("RemoteAccess is Running but SSTP's URL is not registered in HTTP.sys: another "
                                 "program may hold the port or the SSTP reservation", True)
        notes.append("RemoteAccess is Running and SSTP's URL is registered"
                     if state.get("sstp_registered") else "RemoteAccess is Running")
        return notes

    def _state(self) -> dict[str, Any]:
        output = self.session.run("remoteaccess_state")
        if not output.get("ok") or not isinstance(output.get("status"), str):
            raise StepFailed(f"cannot read RemoteAccess's state: {output.get('detail')}", False)
        return output

    def _wait(self, done: Callable[[dict[str, Any]], bool], deadline: float, state: dict[str, Any]) -> dict[str, Any]:
        """Poll remoteaccess_state until `done` or the deadline; returns the last state read."""
        t = self.timing
        delay = t.first_poll
        while not done(state):
            remaining = deadline - t.monotonic()
            if remaining <= 0:
                return state
            t.sleep(min(delay, remaining))
            delay = min(delay * 2, t.poll_interval)
            state = self._state()
        return state

    def _look(self) -> dict[str, Any]:
        """The server's state now: a probe without events (one short pipeline)."""
        return self.session.run("probe", EventHours=1, MaxEvents=1)


def _detail(exc: RemoteError | StepFailed) -> str:
    return exc.message if isinstance(exc, RemoteError) else exc.detail


def _result(action: str, output: dict[str, Any]) -> StepResult:
    exit_code = output.get("exit_code")
    return StepResult(
        action=action,
        ok=bool(output.get("ok")),
        changed=bool(output.get("changed")),
        detail=str(output.get("detail", "")),
        exit_code=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None,
    )


def _is_wildcard(endpoint: str) -> bool:
    return endpoint.rsplit(":", 1)[0] in WILDCARD_HOSTS


def _port(snapshot: dict[str, Any]) -> int:
    port = (snapshot.get("sstp") or {}).get("listener_port")
    return port if isinstance(port, int) and not isinstance(port, bool) else 443


def _wildcard_bindings(snapshot: dict[str, Any]) -> dict[str, str]:
    """Wildcard endpoint (lower case) -> certificate hash, from a snapshot."""
    found: dict[str, str] = {}
    for b in (snapshot.get("http_sys") or {}).get("ip_bindings") or []:
        endpoint = str(b.get("endpoint", ""))
        if _is_wildcard(endpoint):
            found[endpoint.lower()] = str(b.get("cert_hash") or "").upper()
    return found


def _configured_thumbprint(snapshot: dict[str, Any]) -> str | None:
    """The certificate SSTP is configured with: Get-RemoteAccess's, else the registry's SHA-1 (DOMAIN 1)."""
    sstp = snapshot.get("sstp") or {}
    for value in ((sstp.get("remote_access") or {}).get("thumbprint"), sstp.get("sha1_hash")):
        if isinstance(value, str) and len(value) == 40:
            return value.upper()
    return None


def _bind_problems(snapshot: dict[str, Any], thumbprint: str) -> list[str]:
    """What is not yet as `bind_sstp_certificate(thumbprint)` wants it."""
    problems = []
    sstp = snapshot.get("sstp") or {}
    configured = _configured_thumbprint(snapshot)
    if configured != thumbprint:
        problems.append(f"SSTP is configured with certificate {configured}")
    if sstp.get("use_https") is not False:
        present = _wildcard_bindings(snapshot)
        for host in WILDCARD_HOSTS:
            endpoint = f"{host}:{_port(snapshot)}"
            cert = present.get(endpoint.lower())
            if cert is None:
                problems.append(f"no HTTP.sys binding on {endpoint}")
            elif cert != thumbprint:
                problems.append(f"HTTP.sys binding {endpoint} carries certificate {cert}; delete it first")
    status = ((snapshot.get("services") or {}).get("RemoteAccess") or {}).get("status")
    if status != "Running":
        problems.append(f"RemoteAccess is {status}")
    urls = (snapshot.get("http_sys") or {}).get("registered_urls")
    if isinstance(urls, list) and not any(str(u).upper().startswith(f"HTTPS://+:{_port(snapshot)}/SRA_") for u in urls):
        problems.append("SSTP's URL is not registered in HTTP.sys")
    return problems
