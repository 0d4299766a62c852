"""The history and approval repository: the only code in sstp-bot that reads or writes the database.

`Repository` is the one public surface; its concerns live in their own modules (`storage.base`,
`storage.audit`, `storage.plans`, `storage.checks`, `storage.requests`).
"""

from __future__ import annotations

from .base import SYSTEM_ACTOR, NotFound, utc_now
from .checks import CheckStore
from .requests import RequestClaims
from .runner import runner_is_dead

__all__ = ["SYSTEM_ACTOR", "NotFound", "Repository", "utc_now"]


class Repository(CheckStore, RequestClaims):
    """Checks, snapshots, plans and their audit trail.

    `url` is any SQLAlchemy URL (`sqlite:///path.db` by default; relative paths are relative to the
    working directory). With `auto_upgrade` the schema is migrated to the current revision on open;
    without it an older database is refused with a ConfigError that says to run `sstp-bot db upgrade`.
    Every time written comes from `clock`.
    """

    def _runner_is_dead(self, runner: str) -> bool | None:
        # Looked up here, so `storage.repository.runner_is_dead` stays the one place to replace it.
        return runner_is_dead(runner)
