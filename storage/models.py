"""ORM models (SQLAlchemy 2.0 typed declarative) of the head schema.

The migrations in `storage/migrations/versions/` build exactly this schema (a test compares them).
Times are stored as naive UTC (`UTCDateTime`) so SQLite and PostgreSQL compare them the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; naive UTC in the column. Naive input is taken as UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[dict[str, Any]]: JSON()}


class SnapshotRow(Base):
    """A probe snapshot, stored once per distinct content (keyed by its hash), zlib-compressed.

    `body` is NULL once pruned; the row stays so the checks that reference it keep a valid key.
    """

    __tablename__ = "snapshots"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    raw_size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    pruned_at: Mapped[datetime | None]


class LeaseRow(Base):
    """A named periodic job (the scheduled sweep, the weekly digest) and the last slot a process claimed.

    One row per job. A process runs slot N only if its conditional UPDATE moved `slot` below N to N
    while no other holder's lease was live, so with several bot processes on one database each slot
    runs once (DESIGN 13). Managed by `storage.operations.LeaseStore`.
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer)
    holder: Mapped[str | None] = mapped_column(String(255))
    claimed_at: Mapped[datetime | None]
    # While the holder runs the slot; NULL once it has finished. A crashed holder's lease runs out.
    expires_at: Mapped[datetime | None]


class CheckRow(Base):
    """One check of one server: its outcome, findings and the snapshot it was made from."""

    __tablename__ = "checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    server: Mapped[str] = mapped_column(String(255))
    actor: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    duration_ms: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    error_kind: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    findings: Mapped[list[dict[str, Any]]]
    snapshot_hash: Mapped[str | None] = mapped_column(String(64), ForeignKey("snapshots.hash"))

    __table_args__ = (
        # history of one server, newest first; latest check per server (fleet status)
        Index("ix_checks_server_finished", "server", "finished_at", "id"),
        # history of the whole fleet, newest first; prune's "referenced since the cutoff"
        Index("ix_checks_finished", "finished_at"),
    )


class PlanRow(Base):
    """A remediation plan and its place in the approval state machine."""

    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    check_id: Mapped[int] = mapped_column(ForeignKey("checks.id"))
    server: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    steps: Mapped[list[dict[str, Any]]]
    fingerprint: Mapped[str] = mapped_column(String(128))
    requester: Mapped[str] = mapped_column(String(255))
    approver: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    channel: Mapped[str | None] = mapped_column(String(64))
    message_ts: Mapped[str | None] = mapped_column(String(64))
    step_results: Mapped[list[dict[str, Any]]]
    # Who moved it to RUNNING (`storage.runner.current_runner()`); NULL before then, and on rows
    # started before revision 0003.
    runner: Mapped[str | None] = mapped_column(Text)
    # The state the plan's Slack card last showed (revision 0005): a terminal plan whose card shows
    # another state (a crash, a database outage at the end of a fix) gets its card updated on recovery.
    card_state: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        Index("ix_plans_server_created", "server", "created_at", "id"),
        Index("ix_plans_created", "created_at"),
        Index("ix_plans_state_expires", "state", "expires_at"),
        Index("ix_plans_check_id", "check_id"),
        # At most one plan RUNNING per server, enforced by the database itself (DESIGN 6).
        Index(
            "uq_plans_one_running_per_server",
            "server",
            unique=True,
            sqlite_where=text("state = 'RUNNING'"),
            postgresql_where=text("state = 'RUNNING'"),
        ),
    )


class AuditRow(Base):
    """One audit event. Append-only: UPDATE and DELETE are refused by database triggers and by the ORM.

    `plan_id` has no foreign key on purpose: a refused attempt on a plan that does not exist is
    audited too.
    """

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    server: Mapped[str | None] = mapped_column(String(255))
    plan_id: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(32))
    details: Mapped[dict[str, Any]]

    __table_args__ = (
        Index("ix_audit_plan_id", "plan_id", "id"),
        Index("ix_audit_at", "at"),
    )


class SlackRequestRow(Base):
    """A signed Slack request already accepted (revision 0005): its signature's SHA-256, kept until
    the request's own timestamp leaves the five-minute window, so a replay is refused across restarts."""

    __tablename__ = "slack_requests"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime]

    __table_args__ = (Index("ix_slack_requests_expires", "expires_at"),)
