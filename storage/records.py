"""What the repository returns: frozen dataclasses, never ORM objects (they stay inside `storage`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal


@dataclass(frozen=True)
class CheckRecord:
    """One stored check of one server. `plan_id` is the newest plan made from it, if any."""

    id: int
    server: str
    actor: str
    source: str
    started_at: datetime
    finished_at: datetime
    status: str
    error_kind: str | None
    error_message: str | None
    findings: list[dict[str, Any]]
    plan_id: int | None
    duration_ms: int
    snapshot_hash: str | None


@dataclass(frozen=True)
class PlanRecord:
    """One remediation plan and where it is in the approval state machine (DESIGN 6)."""

    id: int
    check_id: int
    server: str
    state: str
    steps: list[dict[str, Any]]
    fingerprint: str
    requester: str
    approver: str | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    finished_at: datetime | None
    channel: str | None
    message_ts: str | None
    step_results: list[dict[str, Any]]
    source: str
    #: The process that runs (or ran) the plan, `storage.runner.current_runner()` of it; None until
    #: RUNNING, and for plans started before this was recorded.
    runner: str | None = None


@dataclass(frozen=True)
class AuditRecord:
    """One append-only audit event: who did what, when, and whether it was allowed."""

    id: int
    at: datetime
    actor: str
    action: str
    server: str | None
    plan_id: int | None
    outcome: str
    details: dict[str, Any]


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a server's history: a check or a plan (exactly one of them is set)."""

    at: datetime
    kind: Literal["check", "plan"]
    server: str
    check: CheckRecord | None
    plan: PlanRecord | None
