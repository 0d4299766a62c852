"""An in-memory stand-in for `bot.service.Service`, with the same method signatures.

Plan transitions are conditional under one lock, as the real repository's `UPDATE ... WHERE state =
:expected` makes them: twenty concurrent approvals make exactly one APPROVED plan.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.config import Config
from bot.service import CheckOutcome, FixOutcome, StepResult
from commands.errors import NotAuthorised, PlanStateError
from commands.model import CheckResult, Finding, Plan, Step
from commands.scripts import validate_params
from commands.server import ServerConfig
from storage.records import CheckRecord, HistoryEntry, PlanRecord
from storage.repository import NotFound

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@dataclass
class AuditEvent:
    actor: str
    action: str
    outcome: str
    server: str | None = None
    plan_id: int | None = None
    details: dict[str, Any] | None = None


def hash_mismatch(server: str = "vpn01", *, vpn_connections: int = 3, steps: int = 2) -> CheckResult:
    """The seed's error: a critical finding with a two-step plan, the second step disruptive."""
    finding = Finding(
        id="SSTP_HASH_MISMATCH",
        severity="critical",
        title="HTTP.sys serves a different certificate than SSTP expects",
        detail="The certificate bound on 0.0.0.0:443 is not the SSTP certificate; clients fail with 0x80092013.",
        evidence={"binding": "0.0.0.0:443", "bound_sha1": "AA" * 20, "sstp_sha1": "BB" * 20},
        fixable=True,
    )
    # Steps the product can produce: shipped scripts, parameters checked by commands.scripts.
    all_steps = [
        Step("bind_sstp_certificate", validate_params("bind_sstp_certificate", {"Thumbprint": "BB" * 20}),
             "Bind the SSTP certificate on 0.0.0.0:443 and [::]:443"),
        Step("restart_remoteaccess", validate_params("restart_remoteaccess", {}),
             "Restart the RemoteAccess service", disruptive=True),
        Step("delete_httpsys_binding", validate_params("delete_httpsys_binding", {"Endpoint": "0.0.0.0:443"}),
             "Delete the HTTP.sys binding on 0.0.0.0:443"),
    ]
    return CheckResult(
        server=server,
        checked_at=T0,
        findings=[finding],
        plan=Plan(steps=tuple(all_steps[:steps]), fingerprint="f" * 64),
        vpn_connections=vpn_connections,
    )


def healthy(server: str) -> CheckResult:
    return CheckResult(server=server, checked_at=T0, findings=[], plan=None, vpn_connections=0)


def unreachable(server: str) -> CheckResult:
    return CheckResult(server=server, checked_at=T0, error_kind="unreachable", error_message=f"{server}:5986 refused the connection")


class FakeService:
    def __init__(
        self,
        config: Config,
        *,
        now: Callable[[], datetime] = lambda: T0,
        check_delay: float = 0.0,
        step_delay: float = 0.0,
        workers: int = 4,
    ) -> None:
        self.config = config
        self.now = now
        self.check_delay = check_delay
        self.step_delay = step_delay
        self.workers = workers
        self.results: dict[str, CheckResult] = {}  # server -> what a check finds (default: healthy)
        self.after_fix: dict[str, CheckResult] = {}  # server -> the re-check after a fix
        self.state_changed: set[int] = set()  # plan ids whose fingerprint changed before running
        self.waits_for: int | None = None  # a plan another process runs on the server: execute waits for it
        self.plans: dict[int, PlanRecord] = {}
        self.checks: list[CheckRecord] = []
        self.audits: list[AuditEvent] = []
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.status_error: Exception | None = None
        self.check_gate: threading.Event | None = None  # when set, every check waits until the gate opens
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._check_ids = itertools.count(1)

    def close(self) -> None:
        self._call("close")

    def _call(self, name: str, *args: Any) -> None:
        with self._lock:
            self.calls.append((name, args))

    def count(self, name: str) -> int:
        with self._lock:
            return sum(1 for n, _ in self.calls if n == name)

    # --- the Service API -------------------------------------------------------------------------
    def resolve_targets(self, names: Sequence[str] = (), *, all_servers: bool = False, group: str | None = None) -> list[ServerConfig]:
        self._call("resolve_targets", tuple(names), all_servers, group)
        if all_servers:
            return list(self.config.servers.values())
        if group is not None:
            return self.config.group(group)
        return [self.config.server(n) for n in names]

    def check(
        self,
        servers: Sequence[ServerConfig],
        actor: Any,
        *,
        on_result: Callable[[CheckOutcome], None] | None = None,
        wait: bool = True,  # the fake has no server locks: nothing is ever busy
        on_busy: Callable[[ServerConfig], None] | None = None,
        propose: bool = True,
    ) -> list[CheckOutcome]:
        self._call("check", tuple(s.name for s in servers), actor)
        from concurrent.futures import ThreadPoolExecutor

        def one(server: ServerConfig) -> CheckOutcome:
            if self.check_gate is not None and not self.check_gate.wait(30):
                raise TimeoutError("the test never opened the check gate")
            if self.check_delay:
                time.sleep(self.check_delay)
            result = replace(self.results.get(server.name) or healthy(server.name), server=server.name)
            with self._lock:
                check_id = next(self._check_ids)
                plan_id = None
                superseded: list[PlanRecord] = []
                for pid, plan in list(self.plans.items()):
                    # As storage.Repository.record_check: a check that reached the server supersedes.
                    if plan.server == server.name and plan.state == "PROPOSED" and result.status != "error":
                        self.plans[pid] = replace(plan, state="SUPERSEDED")
                        superseded.append(self.plans[pid])
                if result.plan is not None and propose:
                    plan_id = next(self._ids)
                    self.plans[plan_id] = PlanRecord(
                        id=plan_id, check_id=check_id, server=server.name, state="PROPOSED",
                        steps=[s.to_json() for s in result.plan.steps], fingerprint=result.plan.fingerprint,
                        requester=actor.id, approver=None, created_at=self.now(),
                        expires_at=self.now() + timedelta(minutes=self.config.slack.plan_ttl_minutes), source=actor.source,
                        decided_at=None, finished_at=None, channel=None, message_ts=None, step_results=[],
                    )
                self.checks.append(CheckRecord(
                    id=check_id, server=server.name, actor=actor.id, source=actor.source, started_at=self.now(),
                    finished_at=self.now(), status=result.status, error_kind=result.error_kind,
                    error_message=result.error_message, findings=[f.to_json() for f in result.findings],
                    plan_id=plan_id, duration_ms=int(self.check_delay * 1000), snapshot_hash=None,
                ))
            outcome = CheckOutcome(result=result, check_id=check_id, plan_id=plan_id, superseded=superseded)
            if on_result is not None:
                on_result(outcome)
            return outcome

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(one, servers))

    def attach_message(self, plan_id: int, channel: str, ts: str) -> None:
        self._call("attach_message", plan_id, channel, ts)
        with self._lock:
            self.plans[plan_id] = replace(self.plans[plan_id], channel=channel, message_ts=ts)

    def get_plan(self, plan_id: int) -> PlanRecord:
        with self._lock:
            if plan_id not in self.plans:
                raise NotFound(f"plan {plan_id} not found")
            return self.plans[plan_id]

    def _decide(self, name: str, plan_id: int, actor: Any, authorised: bool, target: str) -> PlanRecord:
        self._call(name, plan_id, actor.id, authorised)
        with self._lock:
            plan = self.plans.get(plan_id)
            if plan is None:
                self.audits.append(AuditEvent(actor.id, name, "refused: plan not found", plan_id=plan_id))
                raise NotFound(f"plan {plan_id} not found")
            if not authorised:
                self.audits.append(AuditEvent(actor.id, name, "refused: not an approver", plan.server, plan_id))
                raise NotAuthorised("not an approver")
            if name == "approve" and self.config.slack.two_person_rule and plan.requester == actor.id:
                self.audits.append(AuditEvent(actor.id, name, "refused: two-person rule", plan.server, plan_id))
                raise NotAuthorised("two-person rule: you requested this plan")
            if plan.state == "PROPOSED" and self.now() >= plan.expires_at:
                plan = self.plans[plan_id] = replace(plan, state="EXPIRED")
            if plan.state != "PROPOSED":
                self.audits.append(AuditEvent(actor.id, name, f"refused: {plan.state}", plan.server, plan_id))
                raise PlanStateError(plan_id, plan.state, f"plan {plan_id} is {plan.state}")
            plan = self.plans[plan_id] = replace(plan, state=target, approver=actor.id, decided_at=self.now())
            self.audits.append(AuditEvent(actor.id, name, "ok", plan.server, plan_id))
            return plan

    def approve(self, plan_id: int, actor: Any, *, authorised: bool) -> PlanRecord:
        return self._decide("approve", plan_id, actor, authorised, "APPROVED")

    def reject(self, plan_id: int, actor: Any, *, authorised: bool) -> PlanRecord:
        return self._decide("reject", plan_id, actor, authorised, "REJECTED")

    def execute(
        self,
        plan_id: int,
        actor: Any,
        *,
        progress: Callable[[int, int, dict[str, Any]], None] | None = None,
        waiting: Callable[[int], None] | None = None,
    ) -> FixOutcome:
        self._call("execute", plan_id, actor.id)
        if self.waits_for is not None and waiting is not None:
            waiting(self.waits_for)
        with self._lock:
            plan = self.plans[plan_id]
            if plan.state != "APPROVED":
                raise PlanStateError(plan_id, plan.state, f"plan {plan_id} is {plan.state}")
            plan = self.plans[plan_id] = replace(plan, state="RUNNING")
        before = self.results.get(plan.server)
        if plan_id in self.state_changed:
            with self._lock:
                plan = self.plans[plan_id] = replace(plan, state="FAILED", finished_at=self.now())
            return FixOutcome(plan, "FAILED", [], before, None, "The server changed since the plan was made; nothing was touched. Run the check again.", state_changed=True)
        results = []
        for i, step in enumerate(plan.steps, start=1):
            if progress is not None:
                progress(i, len(plan.steps), step)
            if self.step_delay:
                time.sleep(self.step_delay)
            results.append(StepResult(step["action"], True, True, "done"))
        after = self.after_fix.get(plan.server) or healthy(plan.server)
        with self._lock:
            plan = self.plans[plan_id] = replace(
                plan,
                # As bot.service: SUCCEEDED when the re-check proposes nothing more to fix.
                state="SUCCEEDED" if after.plan is None else "FAILED",
                finished_at=self.now(),
                step_results=[r.to_json() for r in results],
            )
        return FixOutcome(plan, plan.state, results, before, after, None)

    def history(self, server: str | None = None, limit: int = 20) -> list[HistoryEntry]:
        self._call("history", server, limit)
        with self._lock:
            entries = [HistoryEntry(c.started_at, "check", c.server, check=c, plan=None) for c in self.checks if server in (None, c.server)]
            entries += [HistoryEntry(p.created_at, "plan", p.server, check=None, plan=p) for p in self.plans.values() if server in (None, p.server)]
        return entries[:limit]

    def status(self) -> list[CheckRecord]:
        self._call("status")
        if self.status_error is not None:
            raise self.status_error
        latest: dict[str, CheckRecord] = {}
        with self._lock:
            for c in self.checks:
                latest[c.server] = c
        return list(latest.values())

    def audit(self, *, actor: str, action: str, outcome: str, server: str | None = None, plan_id: int | None = None, details: dict[str, Any] | None = None) -> None:
        with self._lock:
            self.audits.append(AuditEvent(actor, action, outcome, server, plan_id, details))
