"""HTTP mode over a real socket with the real stack: waitress on 127.0.0.1, bolt's signature check,
the real Service on SQLite, the lab (real PSRP) and the fake Slack Web API.
"""

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
from bot.slack.blocks import APPROVE_ACTION
from bot.slack.server import HttpServer, http_server
from commands.lab import Lab
from tests.fakes import payloads
from tests.fakes.blockkit import all_text
from tests.fakes.harness import APPROVER, BOT_TOKEN, CHANNEL, OPERATOR, SIGNING_SECRET
from tests.fakes.lab_stack import LabStack, assert_every_message_within_limits
from tests.fakes.slack_api import FakeSlackApi

SERVER = "vpn-iis"
SLACK_ACK_LIMIT = 3.0  # seconds Slack waits for the HTTP answer


@dataclass
class Http:
    stack: LabStack
    app: SstpApp
    server: HttpServer

    def post(self, body: str, headers: dict[str, str]) -> tuple[int, float]:
        request = urllib.request.Request(self.server.url + "/slack/events", data=body.encode(), headers=headers, method="POST")
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                return response.status, time.monotonic() - started
        except urllib.error.HTTPError as exc:
            return exc.code, time.monotonic() - started


@pytest.fixture
def http(request: pytest.FixtureRequest, tmp_path: Path, slack_api: FakeSlackApi) -> Iterator[Http]:
    latency = float(getattr(request, "param", 0.0))  # seconds added to every WinRM request of the lab
    with Lab(["iis-binding"], latency=latency) as lab:
        stack = LabStack.build(lab, tmp_path, slack_api, approvers=(APPROVER,), two_person_rule=True)
        app = create_app(stack.service, stack.config, client=make_web_client(BOT_TOKEN, slack_api.url), signing_secret=SIGNING_SECRET)
        server = http_server(app, stack.service, "127.0.0.1", 0).start()
        try:
            yield Http(stack, app, server)
        finally:
            server.stop()
            app.sstp.close()
            stack.close()
    assert_every_message_within_limits(slack_api)


def command_body(slack_api: FakeSlackApi, text: str, user: str = OPERATOR) -> str:
    return payloads.form_body(payloads.slash_command(text, user=user, response_url=slack_api.response_url()))


def test_signed_check_is_acked_in_time_and_really_checks_then_a_signed_approve_fixes(http: Http, slack_api: FakeSlackApi) -> None:
    stack = http.stack
    body = command_body(slack_api, f"check {SERVER}")
    status, elapsed = http.post(body, payloads.sign(SIGNING_SECRET, body))
    assert status == 200 and elapsed < SLACK_ACK_LIMIT
    report = slack_api.wait_for("chat.update", where=lambda c: "SSTP_HASH_MISMATCH" in json.dumps(c.body))[0].body
    assert http.app.sstp.drain(20)
    assert report["channel"] == CHANNEL
    assert stack.scripts[SERVER] == ["probe"] and stack.commands(SERVER) == 1
    (record,) = stack.service.status()
    assert (record.server, record.status, record.actor) == (SERVER, "unhealthy", OPERATOR)
    plan_id, ts = stack.plan_from_last_report()
    assert ts == report["ts"]
    steps = [s["action"] for s in stack.service.get_plan(plan_id).steps]

    click = payloads.actions_body(payloads.block_actions(APPROVE_ACTION, str(plan_id), user=APPROVER, message_ts=ts))
    status, elapsed = http.post(click, payloads.sign(SIGNING_SECRET, click))
    assert status == 200 and elapsed < SLACK_ACK_LIMIT
    slack_api.wait_for("chat.update", where=lambda c: "Fix applied" in all_text(c.body), timeout=20)
    assert http.app.sstp.drain(20)
    assert stack.service.get_plan(plan_id).state == "SUCCEEDED"
    assert stack.fix_scripts(SERVER) == steps

    # /healthz on the same port: the real database answers.
    with urllib.request.urlopen(http.server.url + "/healthz", timeout=10) as response:
        health = json.loads(response.read())
    assert response.status == 200 and health["database"] == {"ok": True} and health["status"] == "ok"


@pytest.mark.parametrize("http", [0.45], indirect=True)
def test_ack_does_not_wait_for_a_check_slower_than_slacks_limit(http: Http, slack_api: FakeSlackApi) -> None:
    # 8 WinRM requests (3 authentication legs, Create, Receive, Command, Receive, Delete) x 0.45 s:
    # the check itself takes longer than Slack waits for the answer.
    body = command_body(slack_api, f"check {SERVER}")
    started = time.monotonic()
    status, elapsed = http.post(body, payloads.sign(SIGNING_SECRET, body))
    assert status == 200 and elapsed < SLACK_ACK_LIMIT
    slack_api.wait_for("chat.update", where=lambda c: "SSTP_HASH_MISMATCH" in json.dumps(c.body), timeout=20)
    assert time.monotonic() - started > SLACK_ACK_LIMIT, "the lab latency no longer makes the check slow"
    assert http.app.sstp.drain(20)
    assert http.stack.scripts[SERVER] == ["probe"]


@pytest.mark.parametrize(
    "sign",
    [
        lambda body: payloads.sign("wrong-secret", body),
        lambda body: payloads.sign(SIGNING_SECRET, body, timestamp=int(time.time()) - 301),
        lambda body: {"Content-Type": "application/x-www-form-urlencoded"},
    ],
    ids=["wrong-secret", "stale", "unsigned"],
)
def test_bad_signature_is_401_and_the_lab_sees_nothing(http: Http, slack_api: FakeSlackApi, sign) -> None:  # type: ignore[no-untyped-def]
    body = command_body(slack_api, f"check {SERVER}")
    status, _ = http.post(body, sign(body))
    assert status == 401
    time.sleep(0.2)  # had anything been handed over, it would have started by now
    assert http.app.sstp.drain(5)
    assert http.stack.lab_requests() == 0 and http.stack.scripts[SERVER] == []
    assert http.stack.service.status() == []
    assert [c.method for c in slack_api.calls if c.method != "auth.test"] == []
