"""Socket Mode with the real stack: the envelope arrives over a loopback WebSocket, the real service
probes a lab server over WinRM/PSRP, SQLite records it, and the approval fixes the server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.slack.app import create_app, make_web_client
from bot.slack.blocks import APPROVE_ACTION
from bot.slack.server import socket_mode_handler
from commands.engine import evaluate
from commands.lab import Lab
from tests.fakes import payloads
from tests.fakes.blockkit import assert_slack_limits, buttons
from tests.fakes.harness import APP_TOKEN, APPROVER, BOT_TOKEN, OPERATOR
from tests.fakes.lab_stack import LabStack
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.socket_mode import FakeSocketModeServer


@pytest.mark.slow
def test_check_and_approve_over_socket_mode_fix_the_lab_server(tmp_path: Path, slack_api: FakeSlackApi) -> None:
    with Lab(["iis-binding"]) as lab, FakeSocketModeServer() as socket_server:
        stack = LabStack.build(lab, tmp_path, slack_api, approvers=(APPROVER,), two_person_rule=True)
        slack_api.socket_mode_url = socket_server.url
        app = create_app(stack.service, stack.config, client=make_web_client(BOT_TOKEN, slack_api.url))
        handler = socket_mode_handler(app, APP_TOKEN, ping_interval=0.2)
        try:
            handler.connect()
            socket_server.wait_connections(1)
            server = next(iter(lab.servers))

            command = payloads.slash_command(f"check {server}", user=OPERATOR, response_url=slack_api.response_url())
            envelope = socket_server.send(payloads.envelope_slash_command(command))
            assert socket_server.wait_ack(envelope)["envelope_id"] == envelope
            card = slack_api.wait_for("chat.update", where=lambda c: bool(buttons(c.body)), timeout=30)[-1]
            assert_slack_limits(card.body)
            assert "SSTP_HASH_MISMATCH" in json.dumps(card.body)
            plan_id = int(buttons(card.body)[0]["value"])
            assert stack.service.get_plan(plan_id).state == "PROPOSED"

            click = payloads.block_actions(APPROVE_ACTION, str(plan_id), user=APPROVER, message_ts=card.body["ts"])
            socket_server.wait_ack(socket_server.send(payloads.envelope_interactive(click)))
            slack_api.wait_for("chat.update", where=lambda c: "Fix applied" in json.dumps(c.body), timeout=60)
            assert app.sstp.drain(30)

            assert stack.service.get_plan(plan_id).state == "SUCCEEDED"
            assert stack.fix_scripts(server) == [s["action"] for s in stack.service.get_plan(plan_id).steps]
            fixed = evaluate(lab.servers[server].twin.probe(), stack.config.server(server), stack.clock())
            assert fixed.status == "healthy"
        finally:
            handler.close()
            app.sstp.close()
            stack.close()
