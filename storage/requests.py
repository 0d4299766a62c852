"""Replay claims of signed Slack requests (`slack_requests`), kept until each request's own timestamp
leaves the five-minute window, so a restart does not reopen it (issue 14)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .base import RepositoryBase
from .engine import IMMEDIATE, build_engine
from .models import SlackRequestRow

#: How long a claim waits for SQLite's write lock: a locked database (a `VACUUM`, a long write) must
#: not hold Slack's 3-second acknowledgement; the caller falls back to its in-process memory.
CLAIM_BUSY_TIMEOUT_MS = 300


class RequestClaims(RepositoryBase):
    """Claim and release the key of a signed request."""

    _claims_sessions: sessionmaker[Session] | None = None

    @contextmanager
    def _claim_write(self) -> Iterator[Session]:
        """A write transaction on a connection with a short busy timeout (its own small engine; an
        in-memory database has one connection only, so it shares the main one)."""
        if self._claims_sessions is None:
            url = self._engine.url
            database = url.database or ""
            in_memory = url.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file::memory:")
            engine = self._engine if in_memory else build_engine(url.render_as_string(hide_password=False), busy_timeout_ms=CLAIM_BUSY_TIMEOUT_MS)
            self._claims_sessions = sessionmaker(engine, expire_on_commit=False)
        with self._claims_sessions() as session:
            session.connection(execution_options={IMMEDIATE: True})
            yield session
            session.commit()

    def close(self) -> None:
        if self._claims_sessions is not None:
            bind = self._claims_sessions.kw.get("bind")
            if bind is not None and bind is not self._engine:
                bind.dispose()
        super().close()

    def claim_request(self, key: str, expires_at: float) -> bool:
        """Claim a signed request's key until `expires_at` (epoch seconds); False if already claimed.

        Expired claims are deleted in the same transaction. Not retried: the caller (the HTTP handler)
        must answer Slack within 3 seconds, and falls back to its in-process memory on an error."""
        now = self._now()
        until = datetime.fromtimestamp(expires_at, UTC)
        try:
            with self._claim_write() as session:
                session.execute(delete(SlackRequestRow).where(SlackRequestRow.expires_at <= now))
                if session.get(SlackRequestRow, key) is not None:
                    return False
                session.add(SlackRequestRow(key=key, expires_at=until))
        except IntegrityError:
            return False
        return True

    def release_request(self, key: str) -> None:
        """Forget a claim (the request was refused after all)."""
        with self._claim_write() as session:
            session.execute(delete(SlackRequestRow).where(SlackRequestRow.key == key))
