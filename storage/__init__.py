"""Storage: SQLAlchemy models, Alembic migrations and the history/approval repository.

Nothing outside this package writes SQL; callers use `Repository` and get frozen records back.
"""

from __future__ import annotations

from .migrate import UpgradeResult, head_revision, upgrade_database
from .records import AuditRecord, CheckRecord, HistoryEntry, PlanRecord
from .repository import NotFound, Repository, utc_now
from .states import LEGAL_TRANSITIONS, TERMINAL_STATES, PlanState

__all__ = [
    "LEGAL_TRANSITIONS",
    "TERMINAL_STATES",
    "AuditRecord",
    "CheckRecord",
    "HistoryEntry",
    "NotFound",
    "PlanRecord",
    "PlanState",
    "Repository",
    "UpgradeResult",
    "head_revision",
    "upgrade_database",
    "utc_now",
]
