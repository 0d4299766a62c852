"""HTTP mode over a real socket: waitress on 127.0.0.1, bolt's signature check, /healthz. Forged,
stale and replayed requests are the HTTP-mode contract: tests/contract_slack/test_http_and_socket.py."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bot.config import Config
from bot.slack.app import SstpApp, create_app, make_web_client
from bot.slack.blocks import APPROVE_ACTION
from bot.slack.server import HttpServer, http_server
from tests.fakes import payloads
from tests.fakes.slack_api import FakeSlackApi
from tests.slack.conftest import APPROVER, BOT_TOKEN, SIGNING_SECRET
from tests.slack.fake_service import FakeService, hash_mismatch


@dataclass
class Running:
    app: SstpApp
    server: HttpServer
    service: FakeService

    def post(self, body: str, headers: dict[str, str], path: str = "/slack/events") -> tuple[int, str, float]:
        request = urllib.request.Request(self.server.url + path, data=body.encode(), headers=headers, method="POST")
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode(), time.monotonic() - started
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), time.monotonic() - started

    def get(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.server.url + path, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture
def running(service: FakeService, config: Config, slack_api: FakeSlackApi) -> Iterator[Running]:
    app = create_app(service, config, client=make_web_client(BOT_TOKEN, slack_api.url), signing_secret=SIGNING_SECRET)
    server = http_server(app, service, "127.0.0.1", 0).start()
    yield Running(app, server, service)
    server.stop()
    app.sstp.close()


def command_body(slack_api: FakeSlackApi, text: str) -> str:
    return payloads.form_body(payloads.slash_command(text, response_url=slack_api.response_url()))


def test_signed_slash_command_is_acked_fast_and_the_work_happens(running: Running, slack_api: FakeSlackApi) -> None:
    running.service.results["vpn01"] = hash_mismatch()
    running.service.check_delay = 1.0  # the probe takes a while; the ack must not wait for it
    body = command_body(slack_api, "check vpn01")
    status, _, elapsed = running.post(body, payloads.sign(SIGNING_SECRET, body))
    assert status == 200 and elapsed < 0.5
    assert running.service.count("check") in (0, 1)
    slack_api.wait_for("chat.postMessage")
    update = slack_api.wait_for("chat.update", timeout=10)[0]
    assert "SSTP_HASH_MISMATCH" in json.dumps(update.body)
    assert running.service.count("check") == 1


def test_signed_button_click(running: Running, slack_api: FakeSlackApi) -> None:
    running.service.results["vpn01"] = hash_mismatch()
    body = command_body(slack_api, "check vpn01")
    running.post(body, payloads.sign(SIGNING_SECRET, body))
    slack_api.wait_for("chat.update")
    assert running.app.sstp.drain(10)
    card = running.service.plans[1]
    body = payloads.actions_body(payloads.block_actions(APPROVE_ACTION, "1", user=APPROVER, channel=str(card.channel), message_ts=str(card.message_ts)))
    status, _, _ = running.post(body, payloads.sign(SIGNING_SECRET, body))
    assert status == 200
    slack_api.wait_for("chat.update", where=lambda c: "Fix applied" in json.dumps(c.body))
    assert running.service.plans[1].state == "SUCCEEDED"


def test_healthz(running: Running, slack_api: FakeSlackApi) -> None:
    status, body = running.get("/healthz")
    assert status == 200 and body["slack"]["ok"] and body["database"]["ok"] and body["status"] == "ok"
    assert body == {"status": "ok", "slack": {"ok": True}, "database": {"ok": True}}  # nothing about the workspace
    before = len(slack_api.calls_to("auth.test"))
    running.get("/healthz")
    assert len(slack_api.calls_to("auth.test")) == before, "auth.test is cached"


def test_healthz_503_when_the_database_is_down(running: Running) -> None:
    running.service.status_error = OSError("database is locked")
    status, body = running.get("/healthz")
    assert status == 503 and body["database"] == {"ok": False} and body["status"] == "failing"


def test_healthz_503_when_slack_rejects_the_token(service: FakeService, config: Config, slack_api: FakeSlackApi) -> None:
    app = create_app(service, config, client=make_web_client(BOT_TOKEN, slack_api.url), signing_secret=SIGNING_SECRET)
    server = http_server(app, service, "127.0.0.1", 0).start()
    try:
        slack_api.fail("auth.test", "invalid_auth")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(server.url + "/healthz", timeout=10)
        assert info.value.code == 503
        assert json.loads(info.value.read())["slack"] == {"ok": False}  # the reason is in the log only
    finally:
        server.stop()
        app.sstp.close()


def test_unknown_path_is_404(running: Running) -> None:
    status, _, _ = running.post("x", {}, path="/nope")
    assert status == 404


def test_http_mode_refuses_an_app_without_signing_secret(service: FakeService, config: Config, slack_api: FakeSlackApi) -> None:
    from commands.errors import ConfigError

    for secret in (None, ""):
        app = create_app(service, config, client=make_web_client(BOT_TOKEN, slack_api.url), signing_secret=secret)
        with pytest.raises(ConfigError):
            http_server(app, service, "127.0.0.1", 0)
        app.sstp.close()


def test_copies_of_one_signed_request_sent_at_once_run_once(running: Running, slack_api: FakeSlackApi) -> None:
    import threading

    body = command_body(slack_api, "status")
    headers = payloads.sign(SIGNING_SECRET, body)
    start = threading.Barrier(8)
    statuses: list[int] = []

    def post() -> None:
        start.wait()
        statuses.append(running.post(body, headers)[0])

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert running.app.sstp.drain(10)
    assert sorted(statuses) == [200] + [401] * 7
    assert running.service.count("status") == 1


def test_a_refused_request_does_not_use_up_its_signature(running: Running, slack_api: FakeSlackApi) -> None:
    """A request bolt refuses (here: a tampered body) releases the signature it claimed."""
    body = command_body(slack_api, "status")
    headers = payloads.sign(SIGNING_SECRET, body)
    assert running.post(body + "&text=check+all", headers)[0] == 401  # same signature, other body
    assert running.post(body, headers)[0] == 200  # the genuine request still goes through
    assert running.app.sstp.drain(10)
    assert running.service.count("status") == 1


def test_an_oversized_body_is_refused_before_it_is_read(running: Running) -> None:
    import socket

    # Announce 2 MiB and send none of it: the server answers from the headers alone.
    with socket.create_connection(("127.0.0.1", running.server.port), timeout=10) as conn:
        conn.sendall(
            b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 2097152\r\n\r\n"
        )
        answer = conn.recv(200)
    assert answer.startswith(b"HTTP/1.1 413")
