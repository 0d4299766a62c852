"""Replay claims of signed Slack requests (`slack_requests`), kept until each request's own timestamp
leaves the five-minute window, so a restart does not reopen it (issue 14)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from .base import RepositoryBase
from .models import SlackRequestRow


class RequestClaims(RepositoryBase):
    """Claim and release the key of a signed request."""

    def claim_request(self, key: str, expires_at: float) -> bool:
        """Claim a signed request's key until `expires_at` (epoch seconds); False if already claimed.

        Expired claims are deleted in the same transaction. Not retried: the caller (the HTTP handler)
        must answer Slack within 3 seconds, and falls back to its in-process memory on an error."""
        now = self._now()
        until = datetime.fromtimestamp(expires_at, UTC)
        try:
            with self._write() as session:
                session.execute(delete(SlackRequestRow).where(SlackRequestRow.expires_at <= now))
                if session.get(SlackRequestRow, key) is not None:
                    return False
                session.add(SlackRequestRow(key=key, expires_at=until))
        except IntegrityError:
            return False
        return True

    def release_request(self, key: str) -> None:
        """Forget a claim (the request was refused after all)."""
        with self._write() as session:
            session.execute(delete(SlackRequestRow).where(SlackRequestRow.key == key))
