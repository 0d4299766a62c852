"""Running the bot: Socket Mode (default) or HTTP mode behind waitress, with `/healthz`.

HTTP mode serves `/slack/events` through bolt's WSGI adapter; bolt checks `X-Slack-Signature` and
`X-Slack-Request-Timestamp` with the signing secret and answers 401 to a bad or stale (over five
minutes) request before any listener runs. Socket Mode asks `apps.connections.open` on the configured
Web API URL for its WebSocket URL and reconnects (a fresh URL each time) when the connection drops.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import waitress
from slack_bolt import App
# The websocket-client adapter, not the built-in one: on Slack's routine `disconnect`
# (refresh_requested) the built-in client cannot close the old connection until its pending 3-second
# read times out, and reads nothing meanwhile, so a command arriving then missed Slack's 3 s limit.
# websocket-client opens the new connection, reads it at once and closes the old one (issue 14).
from slack_bolt.adapter.socket_mode.websocket_client import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from waitress import wasyncore

from bot.slack.ports import ServicePort
from commands.errors import ConfigError

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


class HealthCheck:
    """Slack reachability (`auth.test`, cached) and database reachability (`service.status()`)."""

    def __init__(
        self,
        client: WebClient,
        service: ServicePort,
        *,
        ttl_seconds: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.service = service
        self.ttl_seconds = ttl_seconds
        self._monotonic = monotonic
        self._slack: tuple[float, dict[str, Any]] | None = None
        self._database: tuple[float, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def slack(self) -> dict[str, Any]:
        now = self._monotonic()
        with self._lock:
            if self._slack is not None and now - self._slack[0] < self.ttl_seconds:
                return self._slack[1]
        try:
            response = self.client.auth_test()
            state: dict[str, Any] = {"ok": bool(response.get("ok", True))}
        except SlackApiError as exc:
            # The endpoint is unauthenticated: say that Slack failed, log why (not the workspace's details).
            logger.warning("health check: auth.test failed: %s", exc.response.get("error", "error"))
            state = {"ok": False}
        except (SlackRequestError, OSError) as exc:
            logger.warning("health check: Slack unreachable: %s", type(exc).__name__)
            state = {"ok": False}
        with self._lock:
            self._slack = (now, state)
        return state

    def database(self) -> dict[str, Any]:
        now = self._monotonic()
        with self._lock:
            if self._database is not None and now - self._database[0] < self.ttl_seconds:
                return self._database[1]
        try:
            self.service.status()
            state: dict[str, Any] = {"ok": True}
        except Exception as exc:
            logger.warning("health check: database failed: %s", type(exc).__name__)
            state = {"ok": False}
        with self._lock:
            self._database = (now, state)
        return state

    def report(self) -> tuple[bool, dict[str, Any]]:
        slack, database = self.slack(), self.database()
        ok = bool(slack["ok"] and database["ok"])
        return ok, {"status": "ok" if ok else "failing", "slack": slack, "database": database}


MAX_BODY_BYTES = 1024 * 1024  # Slack's payloads are a few KiB; nothing larger is read before the signature check
REPLAY_WINDOW_SECONDS = 5 * 60  # bolt refuses timestamps older than this


class ReplayGuard:
    """Remembers the signatures of accepted requests for the five minutes bolt accepts a timestamp,
    so a captured signed request cannot be sent again (a signature alone does not prevent replay).

    A signature is claimed before bolt runs (atomically: two copies sent at once cannot both pass) and
    released again when bolt refuses the request, so only accepted requests are kept (forged signatures
    cost no memory); oldest first, so expiry is a pop from the front of an insertion-ordered dict.
    """

    def __init__(self, window: float = REPLAY_WINDOW_SECONDS, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._monotonic = monotonic
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._seen:
            oldest = next(iter(self._seen))
            if now - self._seen[oldest] <= self.window:
                break
            del self._seen[oldest]

    def claim(self, signature: str) -> bool:
        """Take `signature` for this request; False when another request has it (a replay, or the
        same request sent twice at once). Atomic, so two copies arriving together cannot both pass."""
        with self._lock:
            now = self._monotonic()
            self._expire(now)
            if signature in self._seen:
                return False
            self._seen[signature] = now
            return True

    def release(self, signature: str) -> None:
        """Bolt refused the request (a forged or stale signature): forget it, it costs no memory."""
        with self._lock:
            self._seen.pop(signature, None)


class SlackWsgiApp:
    """WSGI application: `/healthz` here, everything else to bolt (which owns `/slack/events`)."""

    def __init__(self, app: App, health: HealthCheck, replay_guard: ReplayGuard | None = None) -> None:
        self.bolt = SlackRequestHandler(app, path=EVENTS_PATH)
        self.health = health
        self.replay_guard = replay_guard or ReplayGuard()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            ok, body = self.health.report()
            data = json.dumps(body).encode()
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Cache-Control", "no-store")],
            )
            return [data]
        signature = str(environ.get("HTTP_X_SLACK_SIGNATURE", ""))
        if signature and not self.replay_guard.claim(signature):
            logger.warning("refused a replayed Slack request")  # checked before any listener runs
            return _plain(start_response, "401 Unauthorized", b"replayed request")
        status: list[str] = []

        def record_status(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(status_line)
            return start_response(status_line, headers, exc_info) if exc_info else start_response(status_line, headers)

        try:
            answer = self.bolt(environ, record_status)
        except BaseException:
            if signature:
                self.replay_guard.release(signature)
            raise
        if signature and not (status and status[0].startswith("2")):
            self.replay_guard.release(signature)  # refused by bolt: not a request worth remembering
        return answer


def _plain(start_response: Callable[..., Any], status: str, body: bytes) -> Iterable[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class HttpServer:
    """waitress serving a `SlackWsgiApp`, in the foreground (`serve_forever`) or a thread (`start`)."""

    def __init__(self, wsgi_app: SlackWsgiApp, host: str, port: int, *, threads: int = 16) -> None:
        self.server: Any = waitress.create_server(
            wsgi_app, host=host, port=port, threads=threads, ident="sstp-bot", max_request_body_size=MAX_BODY_BYTES
        )
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server.effective_port)

    @property
    def url(self) -> str:
        host = self.server.effective_host
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        """Serve in this thread until `stop()` (from another thread) or Ctrl-C."""
        # waitress has no public stop; run its loop one poll at a time and tear down in this thread,
        # so no socket is closed under a select() running elsewhere.
        adj = self.server.adj
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=adj.asyncore_loop_timeout, map=self.server._map, use_poll=adj.asyncore_use_poll, count=1)
        finally:
            self.server.task_dispatcher.shutdown(timeout=5)
            self.server.close()
            wasyncore.close_all(self.server._map)

    def start(self) -> HttpServer:
        self._thread = threading.Thread(target=self.serve_forever, name="sstp-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.server.pull_trigger()  # wake the poll
        if self._thread is not None:
            self._thread.join(timeout=10)


def http_server(app: App, service: ServicePort, host: str, port: int, *, threads: int = 16) -> HttpServer:
    """Build (not start) the HTTP-mode server for a bolt app created with a signing secret."""
    if not getattr(app, "verifies_requests", False):
        # Without the signing secret anyone who can reach the port could run commands and click Approve.
        raise ConfigError("HTTP mode needs the signing secret: create the app with signing_secret=...")
    return HttpServer(SlackWsgiApp(app, HealthCheck(app.client, service)), host, port, threads=threads)


def socket_mode_handler(app: App, app_token: str, *, ping_interval: float = 10) -> SocketModeHandler:
    """A Socket Mode handler whose `apps.connections.open` goes to the app's Web API base URL."""
    return SocketModeHandler(app, app_token, web_client=app.client, ping_interval=ping_interval)


def run_socket_mode(handler: SocketModeHandler, stop: threading.Event) -> None:
    """Connect, then block until `stop` is set; the SDK reconnects by itself on disconnect."""
    try:
        handler.connect()  # inside: a refused app token must still close the client's threads
        while not stop.wait(1.0):
            pass
    finally:
        handler.close()
