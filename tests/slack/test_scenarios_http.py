"""HTTP mode over a real socket with the real stack: waitress on 127.0.0.1, bolt's signature check,
the real Service on SQLite, the lab (real PSRP) and the fake Slack Web API. The signed round trip and
the refusal of bad signatures are the HTTP-mode contract (tests/contract_slack/test_http_and_socket.py);
what stays here is the ack that must not wait for a slow check.
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
from bot.slack.server import HttpServer, http_server
from commands.lab import Lab
from tests.fakes import payloads
from tests.fakes.harness import APPROVER, BOT_TOKEN, OPERATOR, SIGNING_SECRET
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


@pytest.mark.slow
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
