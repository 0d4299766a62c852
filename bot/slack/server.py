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
from slack_bolt.adapter.socket_mode import SocketModeHandler
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
        self._lock = threading.Lock()

    def slack(self) -> dict[str, Any]:
        now = self._monotonic()
        with self._lock:
            if self._slack is not None and now - self._slack[0] < self.ttl_seconds:
                return self._slack[1]
        try:
            response = self.client.auth_test()
            state: dict[str, Any] = {"ok": True, "team": response.get("team"), "bot_user": response.get("user_id")}
        except SlackApiError as exc:
            state = {"ok": False, "error": str(exc.response.get("error", "error"))}
        except (SlackRequestError, OSError) as exc:
            state = {"ok": False, "error": type(exc).__name__}
        with self._lock:
            self._slack = (now, state)
        return state

    def database(self) -> dict[str, Any]:
        try:
            self.service.status()
        except Exception as exc:
            return {"ok": False, "error": type(exc).__name__}
        return {"ok": True}

    def report(self) -> tuple[bool, dict[str, Any]]:
        slack, database = self.slack(), self.database()
        ok = bool(slack["ok"] and database["ok"])
        return ok, {"status": "ok" if ok else "failing", "slack": slack, "database": database}


class SlackWsgiApp:
    """WSGI application: `/healthz` here, everything else to bolt (which owns `/slack/events`)."""

    def __init__(self, app: App, health: HealthCheck) -> None:
        self.bolt = SlackRequestHandler(app, path=EVENTS_PATH)
        self.health = health

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            ok, body = self.health.report()
            data = json.dumps(body).encode()
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Cache-Control", "no-store")],
            )
            return [data]
        return self.bolt(environ, start_response)


class HttpServer:
    """waitress serving a `SlackWsgiApp`, in the foreground (`serve_forever`) or a thread (`start`)."""

    def __init__(self, wsgi_app: SlackWsgiApp, host: str, port: int, *, threads: int = 16) -> None:
        self.server: Any = waitress.create_server(wsgi_app, host=host, port=port, threads=threads, ident="sstp-bot")
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
    handler.connect()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        handler.close()
