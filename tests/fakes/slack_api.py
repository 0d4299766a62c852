"""A fake Slack Web API: a real HTTP server on 127.0.0.1 (port 0), threaded, recording every call.

Point a WebClient at `FakeSlackApi.url` (the base URL, ending in `/api/`). It answers the methods
sstp-bot uses the way Slack does (`auth.test`, `chat.postMessage`, `chat.update`, `chat.postEphemeral`,
`usergroups.users.list`, `apps.connections.open`, `views.publish`, and the files v2 upload:
`files.getUploadURLExternal`, the upload URL it hands out, `files.completeUploadExternal`; uploaded
bytes are in `FakeSlackApi.uploads` by file ID) and the `response_url` of slash commands
(`FakeSlackApi.response_url(...)`). Faults on demand: `rate_limit(method, retry_after, times)` answers
429 with Retry-After, `fail(method, error, times)` answers `{"ok": false, "error": ...}`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

BOT_USER_ID = "UBOTSSTP1"
TEAM_ID = "T0LAB0001"


@dataclass
class ApiCall:
    method: str  # "chat.postMessage", ..., or "response_url"
    body: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)

    @property
    def token(self) -> str | None:
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:]
        token = self.body.get("token")
        return str(token) if token else None


@dataclass
class _Fault:
    times: int
    status: int = 200
    error: str | None = None
    retry_after: int | None = None


class FakeSlackApi:
    """Start with `start()` (or use as a context manager); `stop()` closes it."""

    def __init__(self) -> None:
        self.calls: list[ApiCall] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> latest payload
        self.usergroups: dict[str, list[str]] = {}
        self.channels_without_bot: set[str] = set()
        self.socket_mode_url: str | None = None
        self.delays: dict[str, float] = {}
        self.uploads: dict[str, bytes] = {}  # file ID -> bytes sent to its upload URL
        self.views: dict[str, dict[str, Any]] = {}  # user ID -> the Home view last published
        self._faults: dict[str, list[_Fault]] = {}
        self._lock = threading.Condition()
        self._ts = itertools.count(1)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, name: str = "cmd") -> str:
        return f"http://127.0.0.1:{self.port}/response/{name}"

    def start(self) -> FakeSlackApi:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-slack-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeSlackApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults ------------------------------------------------------------------------------
    def rate_limit(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        with self._lock:
            self._faults.setdefault(method, []).append(_Fault(times, 429, "ratelimited", retry_after))

    def fail(self, method: str, error: str, times: int = 1) -> None:
        with self._lock:
            self._faults.setdefault(method, []).append(_Fault(times, 200, error))

    # --- queries -----------------------------------------------------------------------------
    def calls_to(self, method: str) -> list[ApiCall]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0, where: Callable[[ApiCall], bool] | None = None) -> list[ApiCall]:
        """Block until at least `count` calls to `method` (matching `where`) arrived; AssertionError otherwise."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [c for c in self.calls if c.method == method and (where is None or where(c))]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} call(s) to {method}, got {len(found)}: {[c.method for c in self.calls]}")
                self._lock.wait(remaining)

    def post_message(self, channel: str, text: str = "card") -> str:
        """Create a message directly (as if posted earlier); returns its ts."""
        ts = self._next_ts()
        with self._lock:
            self.messages[(channel, ts)] = {"text": text, "blocks": []}
        return ts

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    # --- the server side ---------------------------------------------------------------------
    def _next_ts(self) -> str:
        return f"{1700000000 + next(self._ts)}.000100"

    def _record(self, call: ApiCall) -> None:
        with self._lock:
            self.calls.append(call)
            self._lock.notify_all()

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(method) or []
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
            return fault

    def _answer(self, call: ApiCall) -> tuple[int, dict[str, Any], dict[str, str]]:
        delay = self.delays.get(call.method)
        if delay:
            time.sleep(delay)
        fault = self._take_fault(call.method)
        if fault is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return fault.status, {"ok": False, "error": fault.error}, headers
        body = call.body
        method = call.method
        if method == "response_url":
            return 200, {"ok": True}, {}
        if method == "apps.connections.open":
            if not (call.token or "").startswith("xapp-"):
                return 200, {"ok": False, "error": "not_allowed_token_type"}, {}
            if self.socket_mode_url is None:
                return 200, {"ok": False, "error": "internal_error"}, {}
            return 200, {"ok": True, "url": self.socket_mode_url}, {}
        if not (call.token or "").startswith("xoxb-"):
            return 200, {"ok": False, "error": "not_authed"}, {}
        if method == "auth.test":
            return 200, {
                "ok": True, "url": "https://lab.slack.test/", "team": "Lab", "user": "sstp-bot",
                "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": "B0LAB0001", "is_enterprise_install": False,
            }, {}
        if method == "chat.postMessage":
            channel = str(body.get("channel", ""))
            if not channel:
                return 200, {"ok": False, "error": "channel_not_found"}, {}
            if channel in self.channels_without_bot:
                return 200, {"ok": False, "error": "not_in_channel"}, {}
            ts = self._next_ts()
            with self._lock:
                self.messages[(channel, ts)] = {k: v for k, v in body.items() if k != "channel"}
            return 200, {"ok": True, "channel": channel, "ts": ts, "message": {"text": body.get("text"), "ts": ts}}, {}
        if method == "chat.update":
            key = (str(body.get("channel", "")), str(body.get("ts", "")))
            with self._lock:
                if key not in self.messages:
                    return 200, {"ok": False, "error": "message_not_found"}, {}
                self.messages[key] = {k: v for k, v in body.items() if k not in ("channel", "ts")}
            return 200, {"ok": True, "channel": key[0], "ts": key[1], "text": body.get("text")}, {}
        if method == "chat.postEphemeral":
            if not body.get("user") or not body.get("channel"):
                return 200, {"ok": False, "error": "user_not_in_channel"}, {}
            return 200, {"ok": True, "message_ts": self._next_ts()}, {}
        if method == "views.publish":
            view = body.get("view")
            if isinstance(view, str):
                view = json.loads(view)
            if not body.get("user_id") or not isinstance(view, dict):
                return 200, {"ok": False, "error": "invalid_arguments"}, {}
            with self._lock:
                self.views[str(body["user_id"])] = view
            return 200, {"ok": True, "view": {"id": "V0HOME0001", **view}}, {}
        if method == "files.getUploadURLExternal":
            if not body.get("filename") or not str(body.get("length", "")).isdigit():
                return 200, {"ok": False, "error": "invalid_arguments"}, {}
            file_id = f"F0{next(self._ts):08d}"
            return 200, {"ok": True, "file_id": file_id, "upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}"}, {}
        if method == "files.completeUploadExternal":
            files = body.get("files")
            if isinstance(files, str):
                files = json.loads(files)
            if not isinstance(files, list) or not files:
                return 200, {"ok": False, "error": "invalid_arguments"}, {}
            with self._lock:
                missing = [f.get("id") for f in files if f.get("id") not in self.uploads]
            if missing:
                return 200, {"ok": False, "error": "file_not_found"}, {}
            return 200, {"ok": True, "files": [{"id": f["id"], "title": f.get("title", "")} for f in files]}, {}
        if method == "usergroups.users.list":
            group = str(body.get("usergroup", ""))
            if group not in self.usergroups:
                return 200, {"ok": False, "error": "no_such_subteam"}, {}
            return 200, {"ok": True, "users": list(self.usergroups[group])}, {}
        return 200, {"ok": False, "error": "unknown_method"}, {}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                path = urlparse(self.path).path
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                if path.startswith("/upload/"):
                    # The files v2 upload URL: raw bytes, no token, answered in plain text like Slack.
                    file_id = path[len("/upload/") :]
                    with fake._lock:
                        fake.uploads[file_id] = raw
                    fake._record(ApiCall(method="file_upload", body={"file_id": file_id, "size": len(raw)}, headers=headers))
                    answer_text = f"OK - {len(raw)}".encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(answer_text)))
                    self.end_headers()
                    self.wfile.write(answer_text)
                    return
                if path.startswith("/api/"):
                    method = path[len("/api/") :]
                elif path.startswith("/response/"):
                    method = "response_url"
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = _parse_body(raw, headers.get("content-type", ""), urlparse(self.path).query)
                call = ApiCall(method=method, body=body, headers=headers)
                status, answer, extra = fake._answer(call)
                fake._record(call)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_POST = _handle
            do_GET = _handle

        return Handler


def _parse_body(raw: bytes, content_type: str, query: str) -> dict[str, Any]:
    body: dict[str, Any] = {k: v[-1] for k, v in parse_qs(query).items()}
    if not raw:
        return body
    if "json" in content_type:
        parsed = json.loads(raw.decode())
        if isinstance(parsed, dict):
            body.update(parsed)
        return body
    for key, values in parse_qs(raw.decode(), keep_blank_values=True).items():
        value: Any = values[-1]
        if key in ("blocks", "attachments"):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        body[key] = value
    return body
