"""Database writes that survive a lock or a full disk for a while (issue 14, item 1).

SQLite answers "database is locked" once its busy timeout is over (a `VACUUM`, a long transaction in
another process) and "database or disk is full" when the disk is; PostgreSQL's lost connections are
the same `OperationalError`. A write the record depends on (a step result, the end of a plan, a probe
that already ran) is retried with exponential backoff for a while before the caller is told.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

FIRST_DELAY = 0.05
MAX_DELAY = 2.0


class _Retrying(Protocol):
    write_retry_seconds: float


def reason(exc: BaseException) -> str:
    """The database's own words (`database is locked`), without the SQL or its parameters."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else type(exc).__name__).splitlines()[0][:200]


def retried(method: F) -> F:
    """Retry `method` on `OperationalError` with backoff for `self.write_retry_seconds` in all.

    The decorated method must be safe to run again after a failure: each is one transaction, rolled
    back when it fails, so a retry starts from the same state.
    """

    @functools.wraps(method)
    def wrapper(self: _Retrying, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.write_retry_seconds
        delay = FIRST_DELAY
        attempt = 1
        while True:
            try:
                return method(self, *args, **kwargs)
            except OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    log.error("database write %s failed after %d attempts: %s", method.__name__, attempt, reason(exc))
                    raise
                log.warning("database write %s failed (%s); retrying in %.2f s", method.__name__, reason(exc), delay)
                time.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
                attempt += 1

    return cast(F, wrapper)


class RunningHere:
    """Plans this process is running right now, across every `Repository` it opened (per database).

    A RUNNING plan whose runner is this process but which nobody here runs any more (its end could not
    be written) is abandoned: the process itself releases it, instead of waiting for "another process"
    that is itself (issue 14, item 1).
    """

    def __init__(self) -> None:
        self._plans: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    def add(self, database: str, plan_id: int) -> None:
        with self._lock:
            self._plans.add((database, plan_id))

    def discard(self, database: str, plan_id: int) -> None:
        with self._lock:
            self._plans.discard((database, plan_id))

    def __contains__(self, item: tuple[str, int]) -> bool:
        with self._lock:
            return item in self._plans


RUNNING_HERE = RunningHere()
