"""Checks and snapshots: recording a check (superseding older proposals), content-addressed
snapshots, the latest check per server, a server's history, pruning."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Table, bindparam, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from commands.model import as_utc

from .base import NotFound
from .models import CheckRow, PlanRow, SnapshotRow
from .plans import PROPOSED_OF_SERVER, PlanStore
from .records import CheckRecord, HistoryEntry, PlanRecord
from .redaction import redact, redact_optional
from .resilience import retried
from .snapshots import decode_snapshot, encode_redacted_snapshot

# Latest check per server without scanning the table: walk the distinct server names through the
# (server, finished_at, id) index (a "skip scan"), then take the newest entry of each. About two index
# seeks per server, whatever the number of checks. Plain SQL that SQLite and PostgreSQL both run.
_LATEST_CHECK_IDS = text(
    """
    WITH RECURSIVE servers(name) AS (
        SELECT MIN(server) FROM checks
        UNION ALL
        SELECT (SELECT MIN(c.server) FROM checks AS c WHERE c.server > servers.name)
        FROM servers WHERE servers.name IS NOT NULL
    )
    SELECT (SELECT c.id FROM checks AS c WHERE c.server = servers.name
            ORDER BY c.finished_at DESC, c.id DESC LIMIT 1) AS id
    FROM servers WHERE servers.name IS NOT NULL
    """
)


_CHECKS = cast(Table, CheckRow.__table__)
_SNAPSHOTS = cast(Table, SnapshotRow.__table__)
_INSERT_CHECK = insert(_CHECKS)
_PLANS_BY_ID = select(cast(Table, PlanRow.__table__)).where(PlanRow.id.in_(bindparam("ids", expanding=True)))


def _upsert_snapshot(dialect_insert: Any) -> Any:
    """`INSERT ... ON CONFLICT (hash) DO UPDATE SET body, pruned_at = NULL WHERE body IS NULL`."""
    statement = dialect_insert(_SNAPSHOTS)
    return statement.on_conflict_do_update(
        index_elements=[_SNAPSHOTS.c.hash],
        set_={"body": statement.excluded.body, "pruned_at": None},
        where=_SNAPSHOTS.c.body.is_(None),
    )


# SQLite (3.24+) and PostgreSQL both take this upsert; another dialect (or an older SQLite) falls back to
# SELECT + INSERT or UPDATE.
_UPSERT_SNAPSHOT = {"sqlite": _upsert_snapshot(sqlite.insert), "postgresql": _upsert_snapshot(postgresql.insert)}


class CheckStore(PlanStore):
    """Checks, snapshots and history (a check supersedes plans, hence on top of `PlanStore`)."""

    def record_check(self, **check: Any) -> int:
        """Store one check (and its snapshot, once per distinct content); returns the check id.

        A successful check supersedes the server's older PROPOSED plans (audited). The arguments are
        those of `record_check_superseding`.
        """
        return self.record_check_superseding(**check)[0]

    @retried
    def record_check_superseding(
        self,
        *,
        server: str,
        actor: str,
        source: str,
        started_at: datetime,
        finished_at: datetime,
        status: str,
        findings: list[dict[str, Any]],
        snapshot: dict[str, Any] | None = None,
        error_kind: str | None = None,
        error_message: str | None = None,
    ) -> tuple[int, list[PlanRecord]]:
        """`record_check`, also returning the plans it superseded, as they are now (so Slack can take
        the buttons off their cards), from the same transaction."""
        started, finished = as_utc(started_at), as_utc(finished_at)
        duration_ms = max(0, round((finished - started).total_seconds() * 1000))
        # Redacted before the transaction: pure functions of the arguments, no need to hold the lock.
        encoded = encode_redacted_snapshot(snapshot) if snapshot is not None else None
        values = {
            "server": server,
            "actor": actor,
            "source": source,
            "started_at": started,
            "finished_at": finished,
            "duration_ms": duration_ms,
            "status": status,
            "error_kind": error_kind,
            "error_message": redact_optional(error_message),
            "findings": redact(list(findings)),
            "snapshot_hash": encoded[0] if encoded is not None else None,
        }
        with self._write_connection() as connection:
            # Core statements built once (module level): the same rows as the ORM unit of work wrote,
            # without its per-object bookkeeping, and no SQL compiled twice (SQLAlchemy caches it).
            if encoded is not None:
                self._store_snapshot(connection, *encoded)
            inserted = connection.execute(_INSERT_CHECK, values).inserted_primary_key
            assert inserted is not None  # a single-row INSERT into a table with a primary key
            check_id: int = inserted[0]
            if status in ("healthy", "unhealthy"):
                # DESIGN 6: a newer check of the same server supersedes older proposals. A check that
                # could not reach the server says nothing new about it, so it supersedes nothing.
                older = connection.execute(PROPOSED_OF_SERVER, {"server": server}).scalars().all()
                if not older:  # the usual case: nothing to supersede
                    return check_id, []
                superseded = self._supersede(connection, older, server, self._now(), {"superseded_by_check": check_id})
                if not superseded:
                    return check_id, []
                # The superseded plans as they are now, in one query, in the order they were superseded.
                rows = {row.id: row for row in connection.execute(_PLANS_BY_ID, {"ids": superseded})}
                return check_id, [self._plan_record(rows[plan_id]) for plan_id in superseded if plan_id in rows]
            return check_id, []

    def _store_snapshot(self, connection: Connection, digest: str, body: bytes, raw_size: int) -> None:
        """Store an encoded snapshot unless its hash is there; a pruned one (body NULL) gets its body back."""
        values = {"hash": digest, "body": body, "raw_size": raw_size, "created_at": self._now()}
        dialect = connection.dialect
        upsert = _UPSERT_SNAPSHOT.get(dialect.name)
        if upsert is not None and (dialect.name != "sqlite" or (dialect.server_version_info or (0,)) >= (3, 24)):
            # One statement instead of a SELECT of the whole row (blob included) then an INSERT: insert,
            # or on a known hash restore a pruned body, or (already stored) leave the row as it is.
            connection.execute(upsert, values)
            return
        existing = connection.execute(
            select(_SNAPSHOTS.c.body.is_(None)).where(_SNAPSHOTS.c.hash == digest)
        ).scalar_one_or_none()
        if existing is None:
            connection.execute(_SNAPSHOTS.insert(), values)
        elif existing:  # pruned earlier, seen again: keep it again
            connection.execute(
                update(_SNAPSHOTS).where(_SNAPSHOTS.c.hash == digest).values(body=body, pruned_at=None)
            )

    def get_check(self, check_id: int) -> CheckRecord:
        with self._read() as session:
            row = session.get(CheckRow, check_id)
            if row is None:
                raise NotFound(f"check {check_id} not found")
            return self._check_records(session, [row])[0]

    def latest_checks(self) -> list[CheckRecord]:
        """The newest check of every server that has one (fleet status), by server name."""
        with self._read() as session:
            ids = [i for i in session.execute(_LATEST_CHECK_IDS).scalars() if i is not None]
            if not ids:
                return []
            rows = session.scalars(select(CheckRow).where(CheckRow.id.in_(ids)).order_by(CheckRow.server))
            return self._check_records(session, list(rows))

    def get_snapshot(self, snapshot_hash: str) -> dict[str, Any] | None:
        """The stored snapshot (without its volatile fields), or None when unknown or pruned."""
        with self._read() as session:
            row = session.get(SnapshotRow, snapshot_hash)
            if row is None or row.body is None:
                return None
            return decode_snapshot(row.body)

    def prune_snapshots(self, older_than_days: int) -> int:
        """Drop the bodies of snapshots no check of the last `older_than_days` days references.

        Findings, checks, plans and the audit log are kept; returns how many bodies were dropped.
        """
        if older_than_days < 0:
            raise ValueError("older_than_days must be 0 or more")
        now = self._now()
        cutoff = now - timedelta(days=older_than_days)
        recent = (
            select(CheckRow.snapshot_hash)
            .where(CheckRow.finished_at >= cutoff, CheckRow.snapshot_hash.is_not(None))
            .scalar_subquery()
        )
        with self._write() as session:
            result = session.execute(
                update(SnapshotRow)
                .where(SnapshotRow.body.is_not(None), SnapshotRow.hash.not_in(recent))
                .values(body=None, pruned_at=now)
                .execution_options(synchronize_session=False)
            )
            return cast(CursorResult[Any], result).rowcount

    def history(self, server: str | None = None, limit: int = 20) -> list[HistoryEntry]:
        """Checks and plans (of one server, or all), newest first, at most `limit` entries."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        checks_q = select(CheckRow)
        plans_q = select(PlanRow)
        if server is not None:
            checks_q = checks_q.where(CheckRow.server == server)
            plans_q = plans_q.where(PlanRow.server == server)
        checks_q = checks_q.order_by(CheckRow.finished_at.desc(), CheckRow.id.desc()).limit(limit)
        plans_q = plans_q.order_by(PlanRow.created_at.desc(), PlanRow.id.desc()).limit(limit)
        with self._read() as session:
            checks = self._check_records(session, list(session.scalars(checks_q)))
            plans = [self._plan_record(row) for row in session.scalars(plans_q)]
        entries = [HistoryEntry(c.finished_at, "check", c.server, c, None) for c in checks]
        entries += [HistoryEntry(p.created_at, "plan", p.server, None, p) for p in plans]
        # Newest first; a plan made at the same instant as its check comes after it in time.
        entries.sort(
            key=lambda e: (e.at, e.kind == "plan", e.plan.id if e.plan else e.check.id if e.check else 0),
            reverse=True,
        )
        return entries[:limit]

    @staticmethod
    def _check_records(session: Session, rows: list[CheckRow]) -> list[CheckRecord]:
        plan_ids: dict[int, int] = {}
        if rows:
            pairs = session.execute(
                select(PlanRow.check_id, PlanRow.id)
                .where(PlanRow.check_id.in_([r.id for r in rows]))
                .order_by(PlanRow.id)
            )
            plan_ids = {check_id: plan_id for check_id, plan_id in pairs}  # the newest plan wins
        return [
            CheckRecord(
                id=r.id,
                server=r.server,
                actor=r.actor,
                source=r.source,
                started_at=as_utc(r.started_at),
                finished_at=as_utc(r.finished_at),
                status=r.status,
                error_kind=r.error_kind,
                error_message=r.error_message,
                findings=list(r.findings or []),
                plan_id=plan_ids.get(r.id),
                duration_ms=r.duration_ms,
                snapshot_hash=r.snapshot_hash,
            )
            for r in rows
        ]
