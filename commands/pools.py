"""Warm runspace pools (DESIGN 13): one open `RemoteSession` per server, kept between checks.

A check on a server whose pool is warm sends one Command and the Receives its output needs: no
connection, authentication, Create or Delete. A server's pool is closed when unused for its
`keep_alive_minutes` (0 = never kept), and at shutdown. A pool the server dropped (shell deleted,
idle timeout, reboot) fails its next request; the probe is then run once more on a new pool,
transparently. Fixes never run in a shared pool: at a lease's first fix script it leaves the warm pool
and opens its own, which it closes at the end.

`WarmPools` is a session factory (`bot.service.SessionFactory`): `service.session_factory = pools`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from commands.errors import RemoteError
from commands.psrp import RemoteSession
from commands.server import ServerConfig

log = logging.getLogger(__name__)

#: What a dropped pool looks like from the client: a WS-Man fault (shell not found: `bad_output`),
#: a closed or reset connection (`unreachable`), a lost NTLM context after a reboot (`auth`).
#: Timeouts and script failures are answers of a live pool and are never retried.
DROPPED_POOL_KINDS = frozenset({"bad_output", "unreachable", "auth"})
PROBE = "probe"


@dataclass
class _Warm:
    server: ServerConfig
    session: RemoteSession
    last_used: float


class WarmPools:
    """The warm pools of one process. Thread-safe; a pool is lent to one lease at a time."""

    def __init__(
        self,
        factory: Callable[[ServerConfig, str | None], RemoteSession] = RemoteSession,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self._monotonic = monotonic
        self._idle: dict[str, _Warm] = {}
        self._lock = threading.Lock()
        self.opened = 0  # pools opened (cold checks and reopenings), for tests and benchmarks
        self.reopened = 0  # dropped pools replaced during a check

    def __call__(self, server: ServerConfig, password: str | None) -> PooledLease:
        """A session for one check or fix of `server` (the service's session factory)."""
        return PooledLease(self, server, password)

    # --- lending ------------------------------------------------------------------------------
    def _take(self, server: ServerConfig) -> RemoteSession | None:
        self.close_idle()
        with self._lock:
            warm = self._idle.pop(server.name, None)
        if warm is not None and warm.server != server:  # the inventory entry changed: start afresh
            self._close(warm.session)
            return None
        return warm.session if warm is not None else None

    def _give_back(self, server: ServerConfig, session: RemoteSession) -> None:
        if server.keep_alive_minutes <= 0:
            self._close(session)
            return
        with self._lock:
            previous = self._idle.get(server.name)
            self._idle[server.name] = _Warm(server, session, self._monotonic())
        if previous is not None and previous.session is not session:
            self._close(previous.session)

    def _open(self, server: ServerConfig, password: str | None) -> RemoteSession:
        session = self._factory(server, password)
        session.open()
        with self._lock:
            self.opened += 1
        return session

    @staticmethod
    def _close(session: RemoteSession) -> None:
        session.close()  # never raises

    # --- upkeep -------------------------------------------------------------------------------
    def warm_servers(self) -> list[str]:
        with self._lock:
            return sorted(self._idle)

    def close_idle(self) -> int:
        """Close the pools unused for their server's keep_alive_minutes; returns how many."""
        now = self._monotonic()
        with self._lock:
            expired = [name for name, w in self._idle.items() if now - w.last_used >= w.server.keep_alive_minutes * 60]
            closing = [self._idle.pop(name) for name in expired]
        for warm in closing:
            self._close(warm.session)
        return len(closing)

    def close(self) -> None:
        """Close every warm pool (shutdown)."""
        with self._lock:
            closing = list(self._idle.values())
            self._idle.clear()
        for warm in closing:
            self._close(warm.session)

    def start_reaper(self, stop: threading.Event, every_seconds: float = 30.0) -> threading.Thread:
        """Close idle pools every `every_seconds` until `stop`, then close them all."""

        def reap() -> None:
            while not stop.wait(every_seconds):
                self.close_idle()
            self.close()

        thread = threading.Thread(target=reap, name="sstp-pool-reaper", daemon=True)
        thread.start()
        return thread


class PooledLease:
    """One check's (or fix's) use of a server: probes on the warm pool, fix scripts on a pool of its own."""

    def __init__(self, pools: WarmPools, server: ServerConfig, password: str | None) -> None:
        self._pools = pools
        self._server = server
        self._password = password
        self._warm: RemoteSession | None = None
        self._own: RemoteSession | None = None

    def __enter__(self) -> PooledLease:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._own is not None:
            self._own.close()
            self._own = None
        if self._warm is not None:
            # A pool whose request failed in a way other than a script's own error is not kept.
            if exc is None or (isinstance(exc, RemoteError) and exc.kind == "script_failed"):
                self._pools._give_back(self._server, self._warm)
            else:
                self._pools._close(self._warm)
            self._warm = None

    def probe(self, event_hours: int = 24) -> dict[str, Any]:
        return self.run(PROBE, EventHours=event_hours)

    def run(self, script: str, **params: Any) -> dict[str, Any]:
        if self._own is None and script != PROBE:
            # A fix: its steps and re-check run in a pool of its own, never in the shared one.
            if self._warm is not None:
                self._pools._give_back(self._server, self._warm)
                self._warm = None
            self._own = self._pools._open(self._server, self._password)
        if self._own is not None:
            return self._own.run(script, **params)
        return self._run_warm(script, params)

    def _run_warm(self, script: str, params: dict[str, Any]) -> dict[str, Any]:
        reused = False
        if self._warm is None:
            self._warm = self._pools._take(self._server)
            reused = self._warm is not None
        if self._warm is None:
            self._warm = self._pools._open(self._server, self._password)
        try:
            return self._warm.run(script, **params)
        except RemoteError as exc:
            if not reused or exc.kind not in DROPPED_POOL_KINDS:
                raise
            # The server dropped the pool while it was idle: reopen once; a second failure is the answer.
            log.info("%s: warm pool dropped (%s); reopening", self._server.name, exc.kind)
            self._pools._close(self._warm)
            self._warm = None
            with self._pools._lock:
                self._pools.reopened += 1
            self._warm = self._pools._open(self._server, self._password)
            return self._warm.run(script, **params)
