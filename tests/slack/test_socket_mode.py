"""Socket Mode through a loopback WebSocket server: hello, envelopes acked and handled, reconnect."""

from __future__ import annotations

import json

from bot.slack.app import SstpApp
from bot.slack.blocks import APPROVE_ACTION
from tests.fakes import payloads
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.socket_mode import FakeSocketModeServer
from tests.slack.conftest import APP_TOKEN, APPROVER
from tests.slack.fake_service import FakeService, hash_mismatch


def test_connects_with_the_app_token_via_apps_connections_open(connected: SstpApp, slack_api: FakeSlackApi) -> None:
    calls = slack_api.calls_to("apps.connections.open")
    assert calls and all(call.token == APP_TOKEN for call in calls)


def test_slash_command_envelope_is_acked_and_handled(connected: SstpApp, service: FakeService, slack_api: FakeSlackApi, socket_server: FakeSocketModeServer) -> None:
    service.results["vpn01"] = hash_mismatch()
    command = payloads.slash_command("check vpn01", response_url=slack_api.response_url())
    envelope_id = socket_server.send(payloads.envelope_slash_command(command))
    ack = socket_server.wait_ack(envelope_id)
    assert ack["envelope_id"] == envelope_id
    update = slack_api.wait_for("chat.update")[0]
    assert "SSTP_HASH_MISMATCH" in json.dumps(update.body)
    assert service.count("check") == 1


def test_usage_error_comes_back_in_the_ack(connected: SstpApp, service: FakeService, socket_server: FakeSocketModeServer) -> None:
    envelope_id = socket_server.send(payloads.envelope_slash_command(payloads.slash_command("check <@U1>")))
    ack = socket_server.wait_ack(envelope_id)
    assert "Mentions" in ack["payload"]["text"]
    assert service.calls == []


def test_block_actions_envelope_is_handled(connected: SstpApp, service: FakeService, slack_api: FakeSlackApi, socket_server: FakeSocketModeServer) -> None:
    service.results["vpn01"] = hash_mismatch()
    socket_server.wait_ack(socket_server.send(payloads.envelope_slash_command(payloads.slash_command("check vpn01"))))
    slack_api.wait_for("chat.update")
    assert connected.sstp.drain(10)
    card = service.plans[1]
    click = payloads.block_actions(APPROVE_ACTION, "1", user=APPROVER, channel=str(card.channel), message_ts=str(card.message_ts))
    envelope_id = socket_server.send(payloads.envelope_interactive(click))
    socket_server.wait_ack(envelope_id)
    slack_api.wait_for("chat.update", where=lambda c: "Fix applied" in json.dumps(c.body))
    assert service.plans[1].state == "SUCCEEDED"


def test_reconnects_after_the_connection_drops(connected: SstpApp, service: FakeService, slack_api: FakeSlackApi, socket_server: FakeSocketModeServer) -> None:
    socket_server.drop()
    socket_server.wait_connections(2, timeout=20)
    assert len(slack_api.calls_to("apps.connections.open")) >= 2, "a fresh URL for each connection"
    envelope_id = socket_server.send(payloads.envelope_slash_command(payloads.slash_command("check vpn02")))
    socket_server.wait_ack(envelope_id, timeout=10)
    slack_api.wait_for("chat.update")
    assert service.count("check") == 1
