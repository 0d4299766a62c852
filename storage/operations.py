"""Storage for operations (DESIGN 13): leases for periodic jobs and the reads sweeps and forecasts need.

`LeaseStore.claim` is one conditional UPDATE, so with several bot processes on one database (SQLite
or PostgreSQL) exactly one of them runs each slot of a periodic job, however many ask at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from commands.model import as_utc

from .engine import IMMEDIATE
from .models import CheckRow, LeaseRow, PlanRow, SnapshotRow
from .repository import Repository
from .snapshots import decode_snapshot


@dataclass(frozen=True)
class SnapshotRef:
    """Which check holds a server's newest stored snapshot."""

    server: str
    check_id: int
    finished_at: datetime
    snapshot_hash: str


@dataclass(frozen=True)
class StoredSnapshot:
    """The newest snapshot of a server a check could read, and when that check finished."""

    server: str
    check_id: int
    finished_at: datetime
    snapshot: dict[str, Any]


class LeaseStore:
    """Leases, fleet counters and latest snapshots, on the repository's engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def for_repository(cls, repo: Repository) -> LeaseStore:
        """Share the repository's engine (and so its in-memory SQLite database in tests)."""
        return cls(repo._engine)

    def _write(self) -> Session:
        session = self._sessions()
        session.connection(execution_options={IMMEDIATE: True})
        return session

    # -- leases ----------------------------------------------------------------------------------

    def claim(self, name: str, slot: int, holder: str, now: datetime, ttl: timedelta) -> bool:
        """Take slot `slot` of job `name` for `holder`; True for exactly one caller per slot.

        Refused when the slot (or a later one) was already taken, or while another holder's lease is
        live (a sweep longer than its interval never overlaps the next one in another process).
        """
        now = as_utc(now)
        with self._write() as session:
            values = {"name": name, "slot": -1, "holder": None, "claimed_at": None, "expires_at": None}
            dialect = session.get_bind().dialect.name
            if dialect == "postgresql":
                session.execute(postgresql.insert(LeaseRow).values(values).on_conflict_do_nothing())
            elif dialect == "sqlite":
                session.execute(sqlite.insert(LeaseRow).values(values).on_conflict_do_nothing())
            elif session.get(LeaseRow, name) is None:
                session.add(LeaseRow(**values))
                session.flush()
            statement = (
                update(LeaseRow)
                .where(
                    LeaseRow.name == name,
                    LeaseRow.slot < slot,
                    (LeaseRow.expires_at.is_(None)) | (LeaseRow.expires_at <= now) | (LeaseRow.holder == holder),
                )
                .values(slot=slot, holder=holder, claimed_at=now, expires_at=now + ttl)
                .execution_options(synchronize_session=False)
            )
            claimed = cast(CursorResult[Any], session.execute(statement)).rowcount == 1
            session.commit()
            return claimed

    def renew(self, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
        """The holder is still running its slot: extend its lease (False if it lost it)."""
        with self._write() as session:
            result = session.execute(
                update(LeaseRow)
                .where(LeaseRow.name == name, LeaseRow.holder == holder, LeaseRow.expires_at.is_not(None))
                .values(expires_at=as_utc(now) + ttl)
                .execution_options(synchronize_session=False)
            )
            session.commit()
            return cast(CursorResult[Any], result).rowcount == 1

    def release(self, name: str, holder: str) -> None:
        """The holder finished its slot: the next slot may start at once."""
        with self._write() as session:
            session.execute(
                update(LeaseRow)
                .where(LeaseRow.name == name, LeaseRow.holder == holder)
                .values(expires_at=None)
                .execution_options(synchronize_session=False)
            )
            session.commit()

    def last_slot(self, name: str) -> int | None:
        with self._sessions() as session:
            row = session.get(LeaseRow, name)
            return None if row is None or row.slot < 0 else row.slot

    # -- reads for sweeps, forecasts and metrics -------------------------------------------------

    def latest_snapshot_refs(self, servers: Iterable[str]) -> dict[str, SnapshotRef]:
        """For each server, the newest check that read the server and whose snapshot is still stored.

        Only keys: callers that cache by check id (forecast, metrics, App Home) load a body only when
        they have not seen that check yet (`snapshot_body`)."""
        found: dict[str, SnapshotRef] = {}
        with self._sessions() as session:
            for server in servers:
                row = session.execute(
                    select(CheckRow.id, CheckRow.finished_at, CheckRow.snapshot_hash)
                    .join(SnapshotRow, SnapshotRow.hash == CheckRow.snapshot_hash)
                    .where(CheckRow.server == server, SnapshotRow.body.is_not(None))
                    .order_by(CheckRow.finished_at.desc(), CheckRow.id.desc())
                    .limit(1)
                ).first()
                if row is not None and row.snapshot_hash is not None:
                    found[server] = SnapshotRef(server, row.id, as_utc(row.finished_at), row.snapshot_hash)
        return found

    def snapshot_body(self, ref: SnapshotRef) -> StoredSnapshot | None:
        """The stored snapshot a reference names (None if it was pruned meanwhile)."""
        with self._sessions() as session:
            row = session.get(SnapshotRow, ref.snapshot_hash)
            if row is None or row.body is None:
                return None
            return StoredSnapshot(ref.server, ref.check_id, ref.finished_at, decode_snapshot(row.body))

    def checks_by_status(self) -> dict[str, int]:
        """How many checks were recorded, by status (monotonic: pruning keeps check rows)."""
        with self._sessions() as session:
            rows = session.execute(select(CheckRow.status, func.count()).group_by(CheckRow.status)).all()
            return {str(status): int(count) for status, count in rows}

    def plans_by_state(self) -> dict[str, int]:
        with self._sessions() as session:
            rows = session.execute(select(PlanRow.state, func.count()).group_by(PlanRow.state)).all()
            return {str(state): int(count) for state, count in rows}
