"""Running the bot: Socket Mode (default) or HTTP mode behind waitress, with `/healthz`.

HTTP mode serves `/slack/events` through bolt's WSGI adapter; bolt checks `X-Slack-Signature` and
`X-Slack-Request-Timestamp` with the signing secret and answers 401 to a bad or stale (over five
minutes) request before any listener runs. Socket Mode asks `apps.connections.open` on the configured
Web API URL for its WebSocket URL and reconnects (a fresh URL each time) when the connection drops.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import waitress
from slack_bolt import App
from slack_bolt.adapter.socket_mode.base_handler import BaseSocketModeHandler
from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.request.internals import parse_body
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.signature import Clock as SignatureClock
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.builtin.connection import Connection, ConnectionState
from slack_sdk.socket_mode.request import SocketModeRequest
from waitress import wasyncore

from bot.metrics import METRICS_PATH, BotMetrics
from bot.slack.ports import ServicePort
from commands.errors import ConfigError

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


class _SharedProbe:
    """One refresh at a time, shared by every caller; nobody waits on it past `wait_seconds`.

    `/healthz` must answer even while Slack's API or the database is slow (issue 14, item 7: twenty
    parallel requests each calling `auth.test` occupied every web worker for 19 s). The refresh runs in
    its own thread; callers get the last known state at once, or wait a moment for the very first one.
    """

    def __init__(
        self, name: str, fn: Callable[[], dict[str, Any]], ttl: float, wait_seconds: float, monotonic: Callable[[], float]
    ) -> None:
        self.name, self._fn, self._ttl, self._wait, self._monotonic = name, fn, ttl, wait_seconds, monotonic
        self._state: tuple[float, dict[str, Any]] | None = None
        self._refreshing: threading.Event | None = None
        self._started = 0.0
        self._lock = threading.Lock()

    def _run(self, done: threading.Event) -> None:
        try:
            state = self._fn()
        except Exception as exc:  # the probe's own errors are its answer, logged without details
            logger.warning("health check: %s failed: %s", self.name, type(exc).__name__)
            state = {"ok": False}
        with self._lock:
            self._state = (self._monotonic(), state)
            self._refreshing = None
        done.set()

    def get(self) -> dict[str, Any]:
        """The current state: cached while fresh; else one refresh (shared), waited for `wait_seconds`.

        A refresh still running after that is an answer in itself: `{"ok": false, "slow": true}`."""
        now = self._monotonic()
        with self._lock:
            state = self._state
            if state is not None and now - state[0] < self._ttl:
                return state[1]
            if self._refreshing is None:
                self._refreshing = threading.Event()
                self._started = now
                threading.Thread(target=self._run, args=(self._refreshing,), name=f"healthz-{self.name}", daemon=True).start()
            done, started = self._refreshing, self._started
        done.wait(max(0.0, self._wait - (now - started)))
        with self._lock:
            if self._state is not None and self._state is not state:
                return self._state[1]
        return {"ok": False, "slow": True}


class HealthCheck:
    """Slack reachability (`auth.test`) and database health, each refreshed by one shared probe.

    The database probe should take the write lock briefly (`Repository.writable()`): a database that
    can still be read but not written (a `VACUUM`, a full disk) is not healthy for a bot whose record
    is the truth (issue 14, item 12).
    """

    def __init__(
        self,
        client: WebClient,
        service: ServicePort,
        *,
        ttl_seconds: float = 30.0,
        database_ttl_seconds: float = 5.0,
        wait_seconds: float = 1.0,
        database_probe: Callable[[], object] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.service = service
        self._database_probe = database_probe or service.status
        self._slack = _SharedProbe("slack", self._slack_state, ttl_seconds, wait_seconds, monotonic)
        self._database = _SharedProbe("database", self._database_state, database_ttl_seconds, wait_seconds, monotonic)

    def _slack_state(self) -> dict[str, Any]:
        try:
            response = self.client.auth_test()
            return {"ok": bool(response.get("ok", True))}
        except SlackApiError as exc:
            # The endpoint is unauthenticated: say that Slack failed, log why (not the workspace's details).
            logger.warning("health check: auth.test failed: %s", exc.response.get("error", "error"))
            return {"ok": False}
        except (SlackRequestError, OSError) as exc:
            logger.warning("health check: Slack unreachable: %s", type(exc).__name__)
            return {"ok": False}

    def _database_state(self) -> dict[str, Any]:
        try:
            self._database_probe()
            return {"ok": True}
        except Exception as exc:
            logger.warning("health check: database failed: %s", type(exc).__name__)
            return {"ok": False}

    def slack(self) -> dict[str, Any]:
        return self._slack.get()

    def database(self) -> dict[str, Any]:
        return self._database.get()

    def report(self) -> tuple[bool, dict[str, Any]]:
        slack, database = self.slack(), self.database()
        ok = bool(slack["ok"] and database["ok"])
        return ok, {"status": "ok" if ok else "failing", "slack": slack, "database": database}


MAX_BODY_BYTES = 1024 * 1024  # Slack's payloads are a few KiB; nothing larger is read before the signature check
REPLAY_WINDOW_SECONDS = 5 * 60  # bolt (and Slack's guidance) refuse timestamps further than this from now


class ReplayStore(Protocol):
    """Where claimed request signatures live: the database (`Repository`), so a restart forgets nothing."""

    def claim_request(self, key: str, expires_at: float) -> bool: ...

    def release_request(self, key: str) -> None: ...


class MemoryReplayStore:
    """In-process claims (tests, or a service without a database); expiry is each claim's own time."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim_request(self, key: str, expires_at: float) -> bool:
        with self._lock:
            now = self._clock()
            for old in [k for k, until in self._seen.items() if until <= now]:
                del self._seen[old]
            if key in self._seen:
                return False
            self._seen[key] = expires_at
            return True

    def release_request(self, key: str) -> None:
        with self._lock:
            self._seen.pop(key, None)


class ReplayGuard:
    """Each signed request is accepted once (a signature alone does not prevent replay).

    A claim lasts until the request's *own* timestamp leaves the window every verifier accepts
    (`timestamp + 5 min`), not five minutes from when it arrived: a request stamped 4 minutes in the
    future (clock skew) stays refused for 9 minutes. Claims live in `store` (the database in the bot),
    so a restart does not reopen the window (issue 14, item 10). Claimed before bolt runs (atomically:
    two copies sent at once cannot both pass) and released when bolt refuses the request.
    """

    def __init__(self, store: ReplayStore | None = None, window: float = REPLAY_WINDOW_SECONDS) -> None:
        self.memory = MemoryReplayStore()
        self.store: ReplayStore = store or self.memory
        self.window = window

    @staticmethod
    def key(signature: str) -> str:
        return hashlib.sha256(signature.encode()).hexdigest()

    def claim(self, signature: str, timestamp: int) -> bool:
        """Take `signature` (stamped `timestamp`); False when another request has it already."""
        key, until = self.key(signature), float(timestamp) + self.window
        if self.store is not self.memory:
            try:
                # Both: the database survives restarts, the memory survives a database outage.
                return self.store.claim_request(key, until) and self.memory.claim_request(key, until)
            except Exception as exc:  # a locked database must not stop Slack's requests (3 s limit)
                logger.warning("replay memory: database unavailable (%s); using this process's memory", type(exc).__name__)
        return self.memory.claim_request(key, until)

    def release(self, signature: str) -> None:
        key = self.key(signature)
        self.memory.release_request(key)
        if self.store is not self.memory:
            try:
                self.store.release_request(key)
            except Exception as exc:
                logger.warning("replay memory: could not release a claim: %s", type(exc).__name__)


class SlackWsgiApp:
    """WSGI application: `/healthz` here, everything else to bolt (which owns `/slack/events`).

    Every request to `/slack/events` is verified *before* anything parses it (issue 14, item 3): one
    timestamp header, a valid v0 signature (slack_sdk's `SignatureVerifier`), a UTF-8 body that bolt can
    parse, a request not seen before. Anything else gets a 4xx with a fixed text; the body of a refused
    request is never logged. Bolt verifies again (defence in depth) and runs the listeners.
    """

    def __init__(
        self,
        app: App,
        health: HealthCheck,
        replay_guard: ReplayGuard | None = None,
        *,
        signing_secret: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bolt = SlackRequestHandler(app, path=EVENTS_PATH)
        self.health = health
        self.replay_guard = replay_guard or ReplayGuard()
        secret = signing_secret if signing_secret is not None else str(getattr(app, "signing_secret", "") or "")
        self._verifier = SignatureVerifier(secret, clock=_Clock(clock)) if secret else None
        # Extra routes (`/metrics`, ...): path -> WSGI app, answered before Slack's path.
        self.routes: dict[str, Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]] = {}
        self.metrics: BotMetrics | None = getattr(app, "metrics", None)
        if self.metrics is not None:
            self.routes[METRICS_PATH] = self.metrics.wsgi_app  # DESIGN 13: /metrics beside /healthz

    def _health(self, start_response: Callable[..., Any]) -> Iterable[bytes]:
        return health_response(self.health, start_response)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return self._health(start_response)
        route = self.routes.get(str(path))
        if route is not None:
            return route(environ, start_response)
        if path != EVENTS_PATH or environ.get("REQUEST_METHOD") != "POST" or self._verifier is None:
            return self.bolt(environ, start_response)
        verified = self._verify(environ)
        if isinstance(verified, tuple):
            status, text = verified
            logger.warning("refused a Slack request: %s", text)  # never the body: it is unauthenticated
            return _plain(start_response, status, text.encode())
        signature, timestamp, body = verified.signature, verified.timestamp, verified.body
        if not self.replay_guard.claim(signature, timestamp):
            logger.warning("refused a replayed Slack request")  # checked before any listener runs
            return _plain(start_response, "401 Unauthorized", b"replayed request")
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        status_seen: list[str] = []

        def record_status(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status_seen.append(status_line)
            return start_response(status_line, headers, exc_info) if exc_info else start_response(status_line, headers)

        try:
            answer = self.bolt(environ, record_status)
        except BaseException:
            self.replay_guard.release(signature)
            raise
        if not (status_seen and status_seen[0].startswith("2")):
            self.replay_guard.release(signature)  # refused by bolt: not a request worth remembering
        return answer

    def _verify(self, environ: dict[str, Any]) -> _Signed | tuple[str, str]:
        """(signature, timestamp, body) of a well-formed signed request, else (status, reason)."""
        assert self._verifier is not None
        timestamp = str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""))
        signature = str(environ.get("HTTP_X_SLACK_SIGNATURE", ""))
        # waitress joins a repeated header with ", ": one timestamp, digits only, or it is not Slack.
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            return "401 Unauthorized", "missing, repeated or malformed timestamp header"
        if not signature.startswith("v0=") or "," in signature or len(signature) > 100:
            return "401 Unauthorized", "missing, repeated or malformed signature header"
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return "400 Bad Request", "bad content length"
        if length > MAX_BODY_BYTES:
            return "413 Payload Too Large", "body too large"
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            text = body.decode("utf-8")  # Slack sends UTF-8; the verifier needs text
        except UnicodeDecodeError:
            return "400 Bad Request", "the body is not UTF-8"
        if not self._verifier.is_valid(text, timestamp, signature):
            return "401 Unauthorized", "invalid or stale signature"
        try:
            content_type = str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower() or None
            parsed = parse_body(text, content_type)
        except ValueError:  # json.JSONDecodeError included
            return "400 Bad Request", "the body is not a Slack payload"
        if not isinstance(parsed, dict):
            return "400 Bad Request", "the body is not a Slack payload"
        return _Signed(signature, int(timestamp), body)


@dataclass(frozen=True)
class _Signed:
    signature: str
    timestamp: int
    body: bytes


class _Clock(SignatureClock):
    """slack_sdk's verifier clock on an injectable time source (tests move time, not the wall clock)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


def _plain(start_response: Callable[..., Any], status: str, body: bytes) -> Iterable[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


# waitress's defaults (100 connections, 120 s idle timeout, checked every 30 s) let 100 idle
# connections whose headers never finish lock everyone out, `/healthz` included (issue 14, item 2).
# Slack's requests are a few KiB sent at once: an idle connection is closed after 10 s (waitress's
# `channel_timeout` is its header and body timeout too: it counts from the last byte received), the
# sweep runs every 2 s, and the limit leaves room for a burst of idle sockets. Open sockets cost no
# worker thread: waitress reads requests in its event loop and hands only complete ones to a worker.
WAITRESS_SETTINGS: dict[str, Any] = {
    "max_request_body_size": MAX_BODY_BYTES,
    "connection_limit": 512,
    "channel_timeout": 10,
    "cleanup_interval": 2,
    "max_request_header_size": 64 * 1024,
}


class HttpServer:
    """waitress serving a `SlackWsgiApp`, in the foreground (`serve_forever`) or a thread (`start`)."""

    def __init__(self, wsgi_app: SlackWsgiApp | HealthWsgiApp, host: str, port: int, *, threads: int = 16, **settings: Any) -> None:
        self.wsgi_app = wsgi_app
        # Our own socket map: when the bind fails (port in use), waitress has already opened its
        # socket and wake-up pipe in it and drops them unclosed; close them here before re-raising.
        sockets: dict[int, Any] = {}
        try:
            self.server: Any = waitress.create_server(
                wsgi_app, map=sockets, host=host, port=port, threads=threads, ident="sstp-bot",
                **{**WAITRESS_SETTINGS, **settings},
            )
        except OSError:
            wasyncore.close_all(sockets)
            raise
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # stop() pulls waitress's trigger (a pipe) while serve_forever may be tearing the server down:
        # this lock orders the two, so the pipe is never written after it was closed (EBADF, or worse,
        # a byte into whatever file reused its descriptor).
        self._teardown = threading.Lock()
        self._closed = False

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
            with self._teardown:
                self._closed = True
                self.server.task_dispatcher.shutdown(timeout=5)
                self.server.close()
                wasyncore.close_all(self.server._map)

    def start(self) -> HttpServer:
        self._thread = threading.Thread(target=self.serve_forever, name="sstp-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._teardown:
            self._stopping.set()
            if not self._closed:
                self.server.pull_trigger()  # wake the poll
        if self._thread is not None:
            self._thread.join(timeout=10)


def http_server(app: App, service: ServicePort, host: str, port: int, *, threads: int = 16) -> HttpServer:
    """Build (not start) the HTTP-mode server for a bolt app created with a signing secret."""
    if not getattr(app, "verifies_requests", False):
        # Without the signing secret anyone who can reach the port could run commands and click Approve.
        raise ConfigError("HTTP mode needs the signing secret: create the app with signing_secret=...")
    # The real service has a repository: its write probe tells a locked database apart from a healthy
    # one, and its table keeps claimed request signatures across restarts. A test double has neither.
    repo = getattr(service, "repo", None)
    probe = getattr(repo, "writable", None)
    store = repo if hasattr(repo, "claim_request") else None
    health = HealthCheck(app.client, service, database_probe=probe)
    return HttpServer(SlackWsgiApp(app, health, ReplayGuard(store)), host, port, threads=threads)


class HealthWsgiApp:
    """Socket Mode's `[service] health_port`: `/healthz` and `/metrics` only (no Slack events)."""

    def __init__(self, health: HealthCheck, metrics: BotMetrics | None) -> None:
        self.health = health
        self.metrics = metrics

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        if path == METRICS_PATH and self.metrics is not None and method == "GET":
            return self.metrics.wsgi(start_response)
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            return health_response(self.health, start_response)
        return _plain(start_response, "404 Not Found", b"not found")


def health_response(health: HealthCheck, start_response: Callable[..., Any]) -> Iterable[bytes]:
    """`/healthz`: 200 with the report while everything answers, else 503 (never cached)."""
    ok, body = health.report()
    data = json.dumps(body).encode()
    start_response(
        "200 OK" if ok else "503 Service Unavailable",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Cache-Control", "no-store")],
    )
    return [data]


def health_server(app: App, service: ServicePort, host: str, port: int) -> HttpServer:
    """Build (not start) Socket Mode's health and metrics server on `[service] health_host/port`."""
    repo = getattr(service, "repo", None)
    health = HealthCheck(app.client, service, database_probe=getattr(repo, "writable", None))
    return HttpServer(HealthWsgiApp(health, getattr(app, "metrics", None)), host, port, threads=4)


class _PromptCloseConnection(Connection):
    """slack_sdk's built-in WebSocket connection whose `close()` does not wait for the pending read.

    The client's single reader thread holds `sock_receive_lock` inside `recv()` for up to the 3-second
    read timeout, and `disconnect()` needs that lock. Shutting the socket down first makes the pending
    `recv()` return at once (b"", also through TLS), so the reader lets go and moves to the new
    connection. The send lock is taken so an acknowledgement being written is not cut in half.
    """

    def close(self) -> None:
        with self.sock_send_lock:
            sock = self.sock
            if sock is not None:
                # OSError: already closed by the peer or after a failed read. socket.socket's own
                # shutdown: ssl.SSLSocket.shutdown would also drop its SSL object under the reader.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
        super().close()


class PromptSocketModeClient(SocketModeClient):
    """slack_sdk's built-in Socket Mode client, not deaf while it replaces its connection.

    On Slack's `disconnect` message (refresh_requested, warning) the built-in client already does what
    Slack asks: it opens the new connection, then closes the old one. But closing the old one waited
    for the reader thread's pending 3-second `recv()`, and the new connection was not read meanwhile:
    a command sent then was acknowledged after 3.1 s, past Slack's 3 s limit (issue 14, item 13).
    Here the old connection is a `_PromptCloseConnection`, so the switch takes one reader poll (0.1 s).

    Chosen over (1) a short read timeout: `_receive_messages` drops the bytes already read of a
    WebSocket frame when a read times out mid-frame, so a short timeout would corrupt large payloads on
    a slow link; and over (2) slack_sdk's websocket-client adapter: it closes the old connection before
    the new one is open, and the old connection's `on_close` starts a reconnect that replaces the new
    one again, a storm during which no connection is open for seconds.
    """

    def connect(self) -> None:
        # SocketModeClient.connect of slack_sdk 3.48.0, with `_PromptCloseConnection` as the class.
        old_session: Connection | None = self.current_session
        old_current_session_state: ConnectionState = self.current_session_state
        if self.wss_uri is None:
            self.wss_uri = self.issue_new_wss_url()
        current_session = _PromptCloseConnection(
            url=self.wss_uri,
            logger=self.logger,
            ping_interval=self.ping_interval,
            trace_enabled=self.trace_enabled,
            all_message_trace_enabled=self.all_message_trace_enabled,
            ping_pong_trace_enabled=self.ping_pong_trace_enabled,
            receive_buffer_size=self.receive_buffer_size,
            proxy=self.proxy,
            proxy_headers=self.proxy_headers,
            on_message_listener=self._on_message,
            on_error_listener=self._on_error,
            on_close_listener=self._on_close,
            ssl_context=self.web_client.ssl,
        )
        current_session.connect()  # the new connection first (Slack's guidance) ...
        if old_current_session_state is not None:
            old_current_session_state.terminated = True
        if old_session is not None:
            old_session.close()  # ... then the old one, at once
        self.current_session = current_session
        self.current_session_state = ConnectionState()
        self.auto_reconnect_enabled = self.default_auto_reconnect_enabled
        if not self.current_app_monitor_started:
            self.current_app_monitor_started = True
            self.current_app_monitor.start()
        self.logger.info(f"A new session has been established (session id: {self.session_id()})")


class SocketModeHandler(BaseSocketModeHandler):
    """bolt's Socket Mode handler (as `slack_bolt.adapter.socket_mode.SocketModeHandler`) on
    `PromptSocketModeClient`; requests go through bolt exactly as with bolt's own handler."""

    client: PromptSocketModeClient

    def __init__(self, app: App, app_token: str, *, ping_interval: float = 10, concurrency: int = 10) -> None:
        self.app = app
        self.app_token = app_token
        self.client = PromptSocketModeClient(
            app_token=app_token,
            logger=app.logger,
            web_client=app.client,
            proxy=app.client.proxy,
            ping_interval=ping_interval,
            concurrency=concurrency,
        )
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]

    def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        """Run the bolt app on one envelope and send its acknowledgement (bolt's builtin handler)."""
        start = time.time()
        send_response(client, req, run_bolt_app(self.app, req), start)


def socket_mode_handler(app: App, app_token: str, *, ping_interval: float = 10) -> SocketModeHandler:
    """A Socket Mode handler whose `apps.connections.open` goes to the app's Web API base URL.

    It acknowledges a command sent right after Slack's `disconnect` within ~0.1 s (`SocketModeHandler`).
    """
    return SocketModeHandler(app, app_token, ping_interval=ping_interval)


def run_socket_mode(handler: SocketModeHandler, stop: threading.Event) -> None:
    """Connect, then block until `stop` is set; the SDK reconnects by itself on disconnect."""
    try:
        handler.connect()  # inside: a refused app token must still close the client's threads
        while not stop.wait(1.0):
            pass
    finally:
        handler.close()
