"""Engine creation: SQLite pragmas, write transactions that take the lock up front, and the ORM guard
that keeps the audit log append-only."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Delete, Engine, Update, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.pool import StaticPool

from commands.errors import ConfigError, SstpBotError

from .models import AuditRow

BUSY_TIMEOUT_MS = 10_000
#: Execution option asking for `BEGIN IMMEDIATE` on SQLite: a write transaction takes the write lock
#: when it starts, so two writers queue on busy_timeout instead of one failing with SQLITE_BUSY when
#: it upgrades its read lock (which busy_timeout cannot wait out).
IMMEDIATE = "sstp_bot_immediate"


class AuditImmutable(SstpBotError):
    """Something tried to change or delete an audit event."""

    def __init__(self) -> None:
        super().__init__("the audit log is append-only: audit events cannot be changed or deleted")


def _json_default(value: Any) -> Any:
    """Values callers may leave in findings or details: times as ISO 8601 UTC, sets as lists."""
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
    return str(value)


def _json_dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def display_url(url: str | URL) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def build_engine(url: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Engine:
    """An engine for `url`. SQLite: parent directories created, WAL, foreign keys, busy timeout."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"database.url: {url!r} is not a database URL (like sqlite:///sstp-bot.db)") from None
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(parsed, pool_pre_ping=True, json_serializer=_json_dumps)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"database.url {display_url(parsed)}: its driver ({exc.name}) is not installed"
                + (": pip install 'sstp-bot[postgres]'" if parsed.get_backend_name() == "postgresql" else "")
            ) from None
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if in_memory:
        engine = create_engine(
            parsed,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            json_serializer=_json_dumps,
        )
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed, connect_args={"timeout": busy_timeout_ms / 1000}, json_serializer=_json_dumps
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN, not the driver (SQLAlchemy's pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@event.listens_for(Session, "before_flush")
def _refuse_audit_changes(session: Session, _context: Any, _instances: Any) -> None:
    """The ORM half of audit immutability (the database triggers are the other half)."""
    for obj in (*session.dirty, *session.deleted):
        if isinstance(obj, AuditRow) and (obj in session.deleted or session.is_modified(obj)):
            raise AuditImmutable()


@event.listens_for(Session, "do_orm_execute")
def _refuse_audit_bulk_changes(state: ORMExecuteState) -> None:
    """Bulk `update(AuditRow)` / `delete(AuditRow)` bypass the flush; refuse them too."""
    statement = state.statement
    # ORM statements carry an annotated copy of the table: compare by name.
    if isinstance(statement, Update | Delete) and getattr(statement.table, "name", None) == AuditRow.__tablename__:
        raise AuditImmutable()
