"""The approval state machine of a remediation plan (DESIGN 6)."""

from __future__ import annotations

from enum import StrEnum


class PlanState(StrEnum):
    PROPOSED = "PROPOSED"
    APPROVED = "APPROVED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    SUPERSEDED = "SUPERSEDED"
    INTERRUPTED = "INTERRUPTED"


#: Every transition the repository will perform; anything else is refused before touching the database.
LEGAL_TRANSITIONS: dict[PlanState, set[PlanState]] = {
    PlanState.PROPOSED: {PlanState.APPROVED, PlanState.REJECTED, PlanState.EXPIRED, PlanState.SUPERSEDED},
    PlanState.APPROVED: {PlanState.RUNNING},
    PlanState.RUNNING: {PlanState.SUCCEEDED, PlanState.FAILED, PlanState.INTERRUPTED},
    PlanState.SUCCEEDED: set(),
    PlanState.FAILED: set(),
    PlanState.REJECTED: set(),
    PlanState.EXPIRED: set(),
    PlanState.SUPERSEDED: set(),
    PlanState.INTERRUPTED: set(),
}

#: States a plan never leaves.
TERMINAL_STATES: frozenset[PlanState] = frozenset(s for s, nxt in LEGAL_TRANSITIONS.items() if not nxt)

#: States that record a human decision (approver and decided_at are set).
DECISION_STATES: frozenset[PlanState] = frozenset({PlanState.APPROVED, PlanState.REJECTED})

#: The audit `action` written for an attempt to move a plan into each state.
TRANSITION_ACTIONS: dict[PlanState, str] = {
    PlanState.APPROVED: "approve",
    PlanState.REJECTED: "reject",
    PlanState.EXPIRED: "expire",
    PlanState.SUPERSEDED: "supersede",
    PlanState.RUNNING: "start",
    PlanState.SUCCEEDED: "succeed",
    PlanState.FAILED: "fail",
    PlanState.INTERRUPTED: "interrupt",
}
