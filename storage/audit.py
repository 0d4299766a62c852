"""The audit trail: append-only events (refusals, decisions, steps), enforced by triggers and an ORM guard."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from commands.model import as_utc

from .base import RepositoryBase
from .models import AuditRow
from .records import AuditRecord
from .resilience import retried


class AuditLog(RepositoryBase):
    """Audit events written by the use-case layer, and a plan's trail."""

    @retried
    def audit(
        self,
        *,
        actor: str,
        action: str,
        outcome: str,
        server: str | None = None,
        plan_id: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append one audit event (refusals by the use-case layer: not an approver, two-person rule...)."""
        with self._write() as session:
            self._insert_audit(
                session.connection(), at=self._now(), actor=actor, action=action, outcome=outcome, server=server,
                plan_id=plan_id, details=details or {},
            )

    def plan_audit(self, plan_id: int) -> list[AuditRecord]:
        """Every audit event about one plan, oldest first."""
        with self._read() as session:
            rows = session.scalars(select(AuditRow).where(AuditRow.plan_id == plan_id).order_by(AuditRow.id))
            return [_audit_record(row) for row in rows]


def _audit_record(r: AuditRow) -> AuditRecord:
    return AuditRecord(
        id=r.id, at=as_utc(r.at), actor=r.actor, action=r.action, server=r.server, plan_id=r.plan_id,
        outcome=r.outcome, details=dict(r.details or {}),
    )
