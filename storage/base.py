"""The repository's foundation: the engine, short transactions, the write probe, the audit writer.

Every public method of the repository opens its own short transaction. Writes start with `BEGIN
IMMEDIATE` on SQLite (see `storage.engine`), so concurrent writers queue instead of failing. The
concerns live in their own modules on top of this one: `storage.audit` (the append-only trail),
`storage.plans` (plans and their state machine), `storage.checks` (checks, snapshots, history) and
`storage.requests` (replay claims of signed Slack requests); `storage.repository.Repository` is all
of them, the one public surface callers use.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Self, cast

from sqlalchemy import Connection, Table, insert, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from commands.errors import ConfigError, SstpBotError
from commands.model import as_utc, format_time

from . import migrate
from .engine import BUSY_TIMEOUT_MS, IMMEDIATE, build_engine, display_url
from .models import AuditRow
from .redaction import redact

SYSTEM_ACTOR = "system"

_INSERT_AUDIT = insert(cast(Table, AuditRow.__table__))

log = logging.getLogger("storage.repository")


def utc_now() -> datetime:
    return datetime.now(UTC)


class NotFound(SstpBotError):
    """No check or plan with that id."""


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


class RepositoryBase:
    """Checks, snapshots, plans and their audit trail.

    `url` is any SQLAlchemy URL (`sqlite:///path.db` by default; relative paths are relative to the
    working directory). With `auto_upgrade` the schema is migrated to the current revision on open;
    without it an older database is refused with a ConfigError that says to run `sstp-bot db upgrade`.
    Every time written comes from `clock`.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime] = utc_now,
        auto_upgrade: bool = True,
        write_retry_seconds: float = 60.0,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        self._clock = clock
        #: How long a write the record depends on is retried (with backoff) on a locked or full database.
        self.write_retry_seconds = write_retry_seconds
        self._busy_timeout_ms = busy_timeout_ms
        # Plans whose end could not be written (reason), and step results waiting to be written: both
        # are written, and the plan ends INTERRUPTED, as soon as the database takes writes again.
        self._abandoned: dict[int, str] = {}
        self._unrecorded: dict[int, list[dict[str, Any]]] = {}
        self._pending_lock = threading.Lock()
        #: This process's writers take turns here before asking SQLite for its write lock (see `_write`).
        self._write_turn = threading.RLock()
        try:
            self._engine = build_engine(url, busy_timeout_ms=busy_timeout_ms)
        except (SQLAlchemyError, OSError, ValueError) as exc:
            raise ConfigError(f"cannot open the database {url!r}: {exc}") from None
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        try:
            if auto_upgrade:
                migrate.upgrade(self._engine)
            else:
                migrate.require_head(self._engine)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            reason = getattr(exc, "orig", None) or exc
            raise ConfigError(f"cannot open the database {display_url(self._engine.url)}: {reason}") from None
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def url(self) -> str:
        """The database URL without its password."""
        return display_url(self._engine.url)

    def upgrade(self) -> None:
        """Migrate the schema to the current revision (a no-op when it is there already)."""
        migrate.upgrade(self._engine)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _now(self) -> datetime:
        return as_utc(self._clock())

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A write transaction that holds the write lock from its first statement, committed on exit."""
        with self._write_turn_taken(), self._sessions() as session:
            session.connection(execution_options={IMMEDIATE: True})
            yield session
            session.commit()

    @contextmanager
    def _write_connection(self) -> Iterator[Connection]:
        """`_write` for Core statements only: the same turn and `BEGIN IMMEDIATE`, the same commit on
        exit (rollback on an error), without an ORM session to set up and flush (the hot path of
        recording a check)."""
        with self._write_turn_taken(), self._engine.connect() as connection:
            connection.execution_options(**{IMMEDIATE: True})  # in place (SQLAlchemy 2.0)
            with connection.begin():
                yield connection

    @contextmanager
    def _write_turn_taken(self) -> Iterator[None]:
        # SQLite has one writer; a thread refused the lock polls for it with growing sleeps (1 ms up
        # to 100 ms), so 25 sweep workers recording at once spent more time asleep than writing. The
        # threads of one process queue on a lock of their own instead and are woken as soon as the
        # writer commits. Other processes still meet SQLite's busy_timeout; so does a thread that
        # waited busy_timeout here without its turn (a database locked from outside).
        turn = self._engine.dialect.name == "sqlite" and self._write_turn.acquire(timeout=self._busy_timeout_ms / 1000)
        try:
            yield
        finally:
            if turn:
                self._write_turn.release()

    @property
    def _database_key(self) -> str:
        return str(self._engine.url)

    def writable(self, timeout_ms: int = 500) -> None:
        """Raise unless the database takes a write lock within `timeout_ms` (a health probe: a database
        that can be read but not written, a `VACUUM` or a full disk, is not healthy)."""
        with self._engine.connect() as conn:
            if conn.dialect.name != "sqlite":
                conn.execute(text("SELECT 1"))
                return
            raw = conn.connection.dbapi_connection
            assert raw is not None
            cursor = raw.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout={int(timeout_ms)}")
                cursor.execute("BEGIN IMMEDIATE")
                cursor.execute("ROLLBACK")
            except sqlite3.OperationalError as exc:  # the driver's own error, as SQLAlchemy would wrap it
                raise OperationalError("BEGIN IMMEDIATE", None, exc) from None
            finally:
                cursor.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
                cursor.close()

    @staticmethod
    def _insert_audit(
        connection: Connection,
        *,
        at: datetime,
        actor: str,
        action: str,
        outcome: str,
        server: str | None,
        plan_id: int | None,
        details: dict[str, Any],
    ) -> None:
        """Append one audit event in the transaction of `connection` (a session's: `session.connection()`)."""
        # A prebuilt Core INSERT, run now: the row the ORM would have flushed at commit, in the same
        # order (events are added one by one), without the unit of work's bookkeeping. Append-only is
        # unaffected: this is an insert, and the triggers and ORM guards still refuse changes.
        connection.execute(
            _INSERT_AUDIT,
            {"at": at, "actor": actor, "action": action, "outcome": outcome, "server": server,
             "plan_id": plan_id, "details": redact(details)},
        )
