"""Issue 14 through the real HTTP server (waitress on 127.0.0.1): idle connections, slow Slack API,
hostile unauthenticated input, replays across restarts and clock skew, a database locked while idle.

Each test prints the figure the closing note quotes (run with `-s` to see them).
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.config import Config
from bot.slack.app import SstpApp, create_app, make_web_client
from bot.slack.redact import RedactSecrets
from bot.slack.server import HttpServer, http_server
from storage import Repository
from tests.fakes import payloads
from tests.fakes.slack_api import FakeSlackApi
from tests.slack.conftest import BOT_TOKEN, SIGNING_SECRET
from tests.slack.fake_service import FakeService


@dataclass
class Running:
    app: SstpApp
    server: HttpServer
    service: FakeService

    def request(self, method: str, path: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> tuple[int, bytes, float]:
        """One request over a fresh connection; `headers` may repeat a name (http.client sends both)."""
        host, port = "127.0.0.1", self.server.port
        conn = http.client.HTTPConnection(host, port, timeout=10)
        started = time.monotonic()
        conn.putrequest(method, path)
        for name, value in headers or []:
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, data, time.monotonic() - started

    def signed(self, body: str | bytes, *, timestamp: int | None = None, content_type: str = "application/x-www-form-urlencoded") -> tuple[int, bytes, float]:
        raw = body.encode() if isinstance(body, str) else body
        headers = payloads.sign(SIGNING_SECRET, raw.decode("latin-1"), timestamp)
        if isinstance(body, bytes):  # sign the bytes themselves (payloads.sign works on text)
            import hashlib
            import hmac
            ts = headers["X-Slack-Request-Timestamp"]
            digest = hmac.new(SIGNING_SECRET.encode(), b"v0:" + ts.encode() + b":" + raw, hashlib.sha256).hexdigest()
            headers["X-Slack-Signature"] = f"v0={digest}"
        headers["Content-Type"] = content_type
        return self.request("POST", "/slack/events", raw, list(headers.items()))


def start(service: FakeService, config: Config, slack_api: FakeSlackApi) -> Running:
    app = create_app(service, config, client=make_web_client(BOT_TOKEN, slack_api.url), signing_secret=SIGNING_SECRET)
    server = http_server(app, service, "127.0.0.1", 0).start()
    return Running(app, server, service)


@pytest.fixture
def running(service: FakeService, config: Config, slack_api: FakeSlackApi) -> Iterator[Running]:
    r = start(service, config, slack_api)
    yield r
    r.server.stop()
    r.app.sstp.close()


def healthz(url: str, timeout: float = 10) -> tuple[int, dict, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=timeout) as response:
            return response.status, json.loads(response.read()), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), time.monotonic() - started


# --- item 2: idle connections -----------------------------------------------------------------------

def test_100_idle_connections_do_not_stop_the_bot_answering(running: Running) -> None:
    idle = []
    try:
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", running.server.port), timeout=5)
            s.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nX-Slack-Request-Timestamp: 1")  # never finished
            idle.append(s)
        time.sleep(0.3)  # waitress has accepted them all
        status, body, elapsed = healthz(running.server.url, timeout=5)
        print(f"\n100 idle connections: /healthz answered {status} in {elapsed * 1000:.0f} ms")
        assert status == 200 and body["status"] == "ok"
        assert elapsed < 1.0
        code, _, took = running.signed(payloads.form_body(payloads.slash_command("help")))
        print(f"100 idle connections: a signed command answered {code} in {took * 1000:.0f} ms")
        assert code == 200 and took < 1.0
    finally:
        for s in idle:
            s.close()


def test_an_idle_connection_is_closed_by_the_server(service: FakeService, config: Config, slack_api: FakeSlackApi) -> None:
    app = create_app(service, config, client=make_web_client(BOT_TOKEN, slack_api.url), signing_secret=SIGNING_SECRET)
    server = http_server(app, service, "127.0.0.1", 0)
    server.server.adj.channel_timeout = 1  # the production 10 s, shortened for the test
    server.server.adj.cleanup_interval = 0.5
    server.start()
    try:
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        started = time.monotonic()
        assert s.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < 4
        s.close()
    finally:
        server.stop()
        app.sstp.close()


# --- item 7: slow Slack API -------------------------------------------------------------------------

def test_20_parallel_healthz_while_slack_is_slow_share_one_auth_test(running: Running, slack_api: FakeSlackApi) -> None:
    slack_api.delays["auth.test"] = 4.0
    with ThreadPoolExecutor(20) as pool:
        started = time.monotonic()
        answers = list(pool.map(lambda _: healthz(running.server.url), range(20)))
        total = time.monotonic() - started
    print(f"\n20 parallel /healthz with auth.test taking 4 s: all answered in {total * 1000:.0f} ms; "
          f"{len(slack_api.calls_to('auth.test'))} auth.test call(s)")
    assert total < 2.5
    assert all(code == 503 and body["slack"]["ok"] is False for code, body, _ in answers)
    assert len(slack_api.calls_to("auth.test")) == 1
    # Meanwhile a signed command is answered at once: the workers are free.
    code, _, took = running.signed(payloads.form_body(payloads.slash_command("help")))
    assert code == 200 and took < 1.0


# --- item 3: hostile unauthenticated input ----------------------------------------------------------

@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """Every log record as `sstp-bot serve` writes them (its handler carries RedactSecrets)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_a_forged_request_is_refused_without_its_body_in_the_log(log_text: io.StringIO, running: Running) -> None:
    marker = "MARKER-BODY-1234"
    body = f"text=x{marker}\nERROR forged: admin approved plan 1&user_id=U1".encode() + b"A" * 200_000
    headers = [("X-Slack-Request-Timestamp", str(int(time.time()))), ("X-Slack-Signature", "v0=" + "0" * 64),
               ("Content-Type", "application/x-www-form-urlencoded")]
    status, _, _ = running.request("POST", "/slack/events", body, headers)
    assert status == 401
    text = log_text.getvalue()
    print(f"\nforged 200 KB request: {len(text)} bytes of log")
    assert marker not in text
    assert len(text) < 2000
    assert not any(line.startswith("ERROR forged") for line in text.splitlines())


def test_log_lines_cannot_be_forged_with_newlines(log_text: io.StringIO) -> None:
    logging.getLogger("bot.slack.app").warning("refused %s", "x\nERROR forged: approved\r\x1b[2J")
    lines = log_text.getvalue().splitlines()
    assert len(lines) == 1
    assert "\\n" in lines[0] and "\x1b" not in lines[0]


@pytest.mark.parametrize(
    "case",
    ["non_json_payload", "non_utf8_signed", "non_utf8_unsigned", "duplicate_timestamp", "payload_json_list", "bad_json_body"],
)
def test_malformed_requests_get_4xx_not_500(running: Running, case: str) -> None:
    now = int(time.time())
    if case == "non_json_payload":
        status, _, _ = running.signed("payload=%7Bnot-json")
    elif case == "non_utf8_signed":
        status, _, _ = running.signed(b"text=\xff\xfe&user_id=U1")
    elif case == "non_utf8_unsigned":
        status, _, _ = running.request("POST", "/slack/events", b"text=\xff\xfe", [("Content-Type", "application/x-www-form-urlencoded")])
    elif case == "duplicate_timestamp":
        body = payloads.form_body(payloads.slash_command("help"))
        signed = payloads.sign(SIGNING_SECRET, body, now)
        headers = [("X-Slack-Request-Timestamp", str(now)), ("X-Slack-Request-Timestamp", str(now - 1000)),
                   ("X-Slack-Signature", signed["X-Slack-Signature"]), ("Content-Type", signed["Content-Type"])]
        status, _, _ = running.request("POST", "/slack/events", body.encode(), headers)
    elif case == "payload_json_list":
        status, _, _ = running.signed("payload=%5B1%2C2%5D")
    else:
        status, _, _ = running.signed("{not json", content_type="application/json")
    assert 400 <= status < 500, status
    assert running.service.calls == []


# --- item 10: replay across restarts and clock skew -------------------------------------------------

def test_a_signed_command_cannot_be_replayed_after_a_restart(service: FakeService, config: Config, slack_api: FakeSlackApi, tmp_path: Path) -> None:
    repo = Repository(f"sqlite:///{tmp_path / 'bot.db'}")
    service.repo = repo  # type: ignore[attr-defined]  # the real Service has its repository here
    body = payloads.form_body(payloads.slash_command("help", response_url=slack_api.response_url()))
    first = start(service, config, slack_api)
    ts = int(time.time())
    try:
        assert first.signed(body, timestamp=ts)[0] == 200
        assert first.signed(body, timestamp=ts)[0] == 401  # the same process remembers it
    finally:
        first.server.stop()
        first.app.sstp.close()
    # The bot restarts: the memory of the first process is gone, the database is not.
    second = start(service, config, slack_api)
    try:
        status, text, _ = second.signed(body, timestamp=ts)
        assert status == 401 and b"replayed" in text
    finally:
        second.server.stop()
        second.app.sstp.close()
        repo.close()


def test_replay_memory_counts_from_the_requests_own_timestamp(running: Running) -> None:
    from bot.slack.server import ReplayGuard

    guard = ReplayGuard()
    clock = [1_000_000.0]
    guard.memory._clock = lambda: clock[0]  # the guard's "now"
    skewed = int(clock[0]) + 250  # the sender's clock runs 250 s ahead: still inside bolt's window
    assert guard.claim("v0=abc", skewed)
    clock[0] += 310  # five minutes after arrival, the request is still valid (its timestamp is 60 s old)
    assert not guard.claim("v0=abc", skewed)
    clock[0] += 250  # now the timestamp is past the window: nobody accepts it any more, forget it
    assert guard.claim("v0=abc", skewed)


# --- item 12: a database locked while idle ----------------------------------------------------------

def test_healthz_reports_a_locked_database(service: FakeService, config: Config, slack_api: FakeSlackApi, tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    repo = Repository(f"sqlite:///{path}")
    service.repo = repo  # type: ignore[attr-defined]
    r = start(service, config, slack_api)
    try:
        assert healthz(r.server.url)[1]["database"] == {"ok": True}
        time.sleep(5.1)  # past the database probe's cache
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # what a VACUUM or a long write in another process does
        try:
            code, body, elapsed = healthz(r.server.url)
            print(f"\nlocked database: /healthz {code} {body['database']} in {elapsed * 1000:.0f} ms")
            assert code == 503 and body["database"]["ok"] is False and elapsed < 2
        finally:
            locker.execute("ROLLBACK")
            locker.close()
    finally:
        r.server.stop()
        r.app.sstp.close()
        repo.close()
