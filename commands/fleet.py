"""Run one operation on many servers: a bounded thread pool, never two operations on one server.

The per-server locks are process-wide, so a fleet check, a fix and a Slack-triggered check of the
same server serialise on the server while different servers run concurrently (DESIGN 2).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
S = TypeVar("S")

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class _Named(Protocol):
    name: str


def server_lock(name: str) -> threading.Lock:
    """The process-wide lock of one server (by inventory name)."""
    with _locks_guard:
        lock = _locks.get(name)
        if lock is None:
            lock = _locks[name] = threading.Lock()
        return lock


@contextmanager
def exclusive(name: str) -> Iterator[None]:
    """Hold the server's lock for the duration of one operation (checks and fixes both use it)."""
    with server_lock(name):
        yield


class ServerBusy(Exception):
    """The server's lock was held by another operation and the caller asked not to wait for it."""

    def __init__(self, server: str) -> None:
        super().__init__(f"{server} is busy with another operation")
        self.server = server


def _name_of(server: Any) -> str:
    return str(getattr(server, "name", server))


def run_fleet(
    servers: Iterable[S],
    fn: Callable[[S], T],
    *,
    max_workers: int = 8,
    on_result: Callable[[S, T | None, BaseException | None], None] | None = None,
    wait: bool = True,
) -> list[T | BaseException]:
    """`fn(server)` for every server, at most `max_workers` at a time, one at a time per server.

    Returns the results in input order; a server whose `fn` raised gets the exception in its place
    (one broken server never hides the others). `on_result(server, result, error)` is called as each
    finishes, from the worker thread. With `wait=False` a server whose lock another operation holds
    is not waited for: its place gets `ServerBusy` at once (callers that must never park a thread
    behind a fix, such as the Slack workers, issue 14 item 5).
    """
    items = list(servers)
    if not items:
        return []

    def one(server: S) -> T | BaseException:
        name = _name_of(server)
        try:
            lock = server_lock(name)
            if not lock.acquire(blocking=wait):
                raise ServerBusy(name)
            try:
                result = fn(server)
            finally:
                lock.release()
        except Exception as exc:
            if on_result is not None:
                on_result(server, None, exc)
            return exc
        if on_result is not None:
            on_result(server, result, None)
        return result

    workers = max(1, min(max_workers, len(items)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleet") as pool:
        return list(pool.map(one, items))
