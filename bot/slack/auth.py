"""Who may do what: operators run checks, approvers decide plans, in allowed channels only.

IDs starting with U or W are users; S are user groups, expanded with `usergroups.users.list` and
cached for `ttl_seconds`. A failed look-up counts as "not a member" (fail closed) and is not cached.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from bot.config import SlackConfig

logger = logging.getLogger(__name__)

USER_ID = re.compile(r"^[UW][A-Z0-9]{2,30}$")


class Authoriser:
    def __init__(
        self,
        config: SlackConfig,
        client: WebClient,
        *,
        ttl_seconds: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.client = client
        self.ttl_seconds = ttl_seconds
        self._monotonic = monotonic
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def channel_allowed(self, channel_id: str | None) -> bool:
        """Empty `allowed_channels` means anywhere the app is."""
        if not self.config.allowed_channels:
            return True
        return channel_id is not None and channel_id in self.config.allowed_channels

    def is_operator(self, user_id: str) -> bool:
        """Empty `operators` means everyone may run checks."""
        if not self.config.operators:
            return True
        return self._matches(user_id, self.config.operators)

    def is_approver(self, user_id: str) -> bool:
        """Empty `approvers` means nobody may approve."""
        return self._matches(user_id, self.config.approvers)

    def _matches(self, user_id: str, entries: Sequence[str]) -> bool:
        # Only people (U…, W… on Enterprise Grid) are operators or approvers: a user-group ID in a
        # payload's `user.id` must not match the group's own entry in the list (issue 14, item 11).
        if not USER_ID.match(user_id or ""):
            return False
        if user_id in entries:
            return True
        return any(user_id in self.group_members(e) for e in entries if e.startswith("S"))

    def group_members(self, group_id: str) -> frozenset[str]:
        now = self._monotonic()
        with self._lock:
            cached = self._groups.get(group_id)
            if cached is not None and now - cached[0] < self.ttl_seconds:
                return cached[1]
        try:
            response = self.client.usergroups_users_list(usergroup=group_id)
        except (SlackApiError, SlackRequestError, OSError) as exc:
            logger.warning("could not resolve user group %s: %s", group_id, type(exc).__name__)
            return frozenset()
        members = frozenset(str(u) for u in (response.get("users") or []))
        with self._lock:
            self._groups[group_id] = (now, members)
        return members
