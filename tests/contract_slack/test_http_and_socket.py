"""DESIGN 7/8 transport: HTTP mode (signed POSTs to /slack/events through bolt and waitress) and Socket
Mode. Forged, unsigned and stale requests get 401 and nothing runs; real ones are acked within 3 s."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.slack.app import SstpApp, create_app, make_web_client
from bot.slack.blocks import APPROVE_ACTION, REJECT_ACTION
from bot.slack.server import HttpServer, http_server, socket_mode_handler
from commands.errors import ConfigError
from commands.lab import Lab
from tests.contract_slack.conftest import APPROVER, IIS, OPERATOR, build_stack
from tests.fakes import payloads
from tests.fakes.blockkit import all_text, buttons
from tests.fakes.harness import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET
from tests.fakes.lab_stack import LabStack
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.socket_mode import FakeSocketModeServer

ACK_LIMIT = 3.0


@dataclass
class Http:
    stack: LabStack
    app: SstpApp
    server: HttpServer

    def post(self, body: str, headers: dict[str, str]) -> tuple[int, float, bytes]:
        request = urllib.request.Request(self.server.url + "/slack/events", data=body.encode(), headers=headers, method="POST")
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, time.monotonic() - started, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, time.monotonic() - started, exc.read()


@pytest.fixture
def http(tmp_path: Path, slack_api: FakeSlackApi) -> Iterator[Http]:
    with Lab(["iis-binding", "healthy"]) as lab:
        stack = build_stack(lab, tmp_path, slack_api)
        app = create_app(stack.service, stack.config, client=make_web_client(BOT_TOKEN, slack_api.url), signing_secret=SIGNING_SECRET)
        server = http_server(app, stack.service, "127.0.0.1", 0).start()
        try:
            yield Http(stack, app, server)
        finally:
            server.stop()
            app.sstp.close()
            stack.close()


def command_body(slack_api: FakeSlackApi, text: str, user: str = OPERATOR) -> str:
    return payloads.form_body(payloads.slash_command(text, user=user, response_url=slack_api.response_url()))


def wait_report(http: Http, slack_api: FakeSlackApi) -> tuple[int, str]:
    slack_api.wait_for("chat.update", where=lambda c: bool(buttons(c.body)), timeout=20)
    assert http.app.sstp.drain(20)
    return http.stack.plan_from_last_report()


def test_signed_command_acked_in_time_then_report_then_signed_approve_fixes(http: Http, slack_api: FakeSlackApi) -> None:
    body = command_body(slack_api, f"check {IIS}")
    status, elapsed, _ = http.post(body, payloads.sign(SIGNING_SECRET, body))
    assert status == 200 and elapsed < ACK_LIMIT
    plan_id, ts = wait_report(http, slack_api)
    click = payloads.actions_body(payloads.block_actions(APPROVE_ACTION, str(plan_id), user=APPROVER, message_ts=ts))
    status, elapsed, _ = http.post(click, payloads.sign(SIGNING_SECRET, click))
    assert status == 200 and elapsed < ACK_LIMIT
    slack_api.wait_for("chat.update", where=lambda c: "Fix applied" in all_text(c.body), timeout=30)
    assert http.app.sstp.drain(30)
    assert http.stack.service.get_plan(plan_id).state == "SUCCEEDED"


def test_usage_error_over_http_is_an_ephemeral_ack(http: Http, slack_api: FakeSlackApi) -> None:
    body = command_body(slack_api, "history vpn-iis abc")
    status, _, raw = http.post(body, payloads.sign(SIGNING_SECRET, body))
    assert status == 200
    text = raw.decode()
    if text.startswith("{"):
        parsed = json.loads(text)
        assert parsed.get("response_type", "ephemeral") == "ephemeral"
        text = all_text(parsed)
    assert "N must be" in text or "number" in text.lower()
    assert http.stack.lab_requests() == 0


BAD_SIGNATURES = {
    "wrong-secret": lambda body: payloads.sign("not-the-signing-secret", body),
    "stale": lambda body: payloads.sign(SIGNING_SECRET, body, timestamp=int(time.time()) - 6 * 60),
    "future": lambda body: payloads.sign(SIGNING_SECRET, body, timestamp=int(time.time()) + 6 * 60),
    "unsigned": lambda body: {"Content-Type": "application/x-www-form-urlencoded"},
    "signature-of-another-body": lambda body: payloads.sign(SIGNING_SECRET, body + "&x=1"),
    "timestamp-swapped": lambda body: {**payloads.sign(SIGNING_SECRET, body), "X-Slack-Request-Timestamp": str(int(time.time()) - 1)},
    "v1-scheme": lambda body: {**payloads.sign(SIGNING_SECRET, body), "X-Slack-Signature": payloads.sign(SIGNING_SECRET, body)["X-Slack-Signature"].replace("v0=", "v1=")},
}


@pytest.mark.parametrize("kind", sorted(BAD_SIGNATURES))
def test_forged_unsigned_or_stale_command_is_401_and_nothing_runs(http: Http, slack_api: FakeSlackApi, kind: str) -> None:
    body = command_body(slack_api, f"check {IIS}")
    status, _, _ = http.post(body, BAD_SIGNATURES[kind](body))
    assert status == 401
    time.sleep(0.3)
    assert http.app.sstp.drain(5)
    assert http.stack.lab_requests() == 0
    assert [c.method for c in slack_api.calls if c.method != "auth.test"] == []
    assert http.stack.service.status() == []


@pytest.mark.parametrize("kind", ["wrong-secret", "stale", "unsigned"])
@pytest.mark.parametrize("action", [APPROVE_ACTION, REJECT_ACTION])
def test_forged_click_is_401_and_the_plan_is_untouched(http: Http, slack_api: FakeSlackApi, kind: str, action: str) -> None:
    body = command_body(slack_api, f"check {IIS}")
    assert http.post(body, payloads.sign(SIGNING_SECRET, body))[0] == 200
    plan_id, ts = wait_report(http, slack_api)
    slack_api.reset()
    http.stack.lab.clear_logs()
    click = payloads.actions_body(payloads.block_actions(action, str(plan_id), user=APPROVER, message_ts=ts))
    status, _, _ = http.post(click, BAD_SIGNATURES[kind](click))
    assert status == 401
    time.sleep(0.3)
    assert http.app.sstp.drain(5)
    assert http.stack.service.get_plan(plan_id).state == "PROPOSED"
    assert http.stack.lab_requests() == 0
    assert [c.method for c in slack_api.calls if c.method != "auth.test"] == []


def test_replayed_signed_command_is_refused(http: Http, slack_api: FakeSlackApi) -> None:
    body = command_body(slack_api, "check vpn-healthy")
    headers = payloads.sign(SIGNING_SECRET, body)
    assert http.post(body, headers)[0] == 200
    assert http.app.sstp.drain(20)
    assert http.post(body, headers)[0] == 401
    assert http.app.sstp.drain(5)
    assert http.stack.scripts["vpn-healthy"] == ["probe"]


def test_http_mode_refuses_to_start_without_a_signing_secret(tmp_path: Path, slack_api: FakeSlackApi) -> None:
    with Lab(["healthy"]) as lab:
        stack = build_stack(lab, tmp_path, slack_api)
        app = create_app(stack.service, stack.config, client=make_web_client(BOT_TOKEN, slack_api.url))
        try:
            with pytest.raises(ConfigError, match="signing secret"):
                http_server(app, stack.service, "127.0.0.1", 0)
        finally:
            app.sstp.close()
            stack.close()


@pytest.mark.slow
def test_socket_mode_command_is_acked_and_answered(tmp_path: Path, slack_api: FakeSlackApi) -> None:
    with Lab(["iis-binding"]) as lab, FakeSocketModeServer() as socket_server:
        stack = build_stack(lab, tmp_path, slack_api)
        slack_api.socket_mode_url = socket_server.url
        app = create_app(stack.service, stack.config, client=make_web_client(BOT_TOKEN, slack_api.url))
        handler = socket_mode_handler(app, APP_TOKEN, ping_interval=0.2)
        try:
            handler.connect()
            socket_server.wait_connections(1)
            # a usage error: answered in the ack itself
            bad = payloads.slash_command("check", user=OPERATOR, response_url=slack_api.response_url())
            started = time.monotonic()
            ack = socket_server.wait_ack(socket_server.send(payloads.envelope_slash_command(bad)))
            assert time.monotonic() - started < ACK_LIMIT
            assert "usage" in json.dumps(ack).lower()
            command = payloads.slash_command(f"check {IIS}", user=OPERATOR, response_url=slack_api.response_url())
            started = time.monotonic()
            socket_server.wait_ack(socket_server.send(payloads.envelope_slash_command(command)))
            assert time.monotonic() - started < ACK_LIMIT
            card = slack_api.wait_for("chat.update", where=lambda c: bool(buttons(c.body)), timeout=30)[-1]
            assert "SSTP_HASH_MISMATCH" in json.dumps(card.body)
            assert app.sstp.drain(20)
            assert stack.scripts[IIS] == ["probe"]
        finally:
            handler.close()
            app.sstp.close()
            stack.close()
