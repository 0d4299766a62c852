"""A bolt app wired to any service and the fake Web API: dispatch commands and clicks as Slack would.

    with FakeSlackApi() as slack_api:
        harness = build_harness(service, config, slack_api)   # service: the real Service or a fake
        harness.command("check vpn01")                          # waits until the work is done
        harness.click(plan_id, approve=True, user=APPROVER)
        slack_api.calls_to("chat.update")                       # what Slack received
        harness.close()
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse

from bot.config import Config, SlackConfig
from bot.slack.app import SstpApp, create_app, make_web_client
from bot.slack.blocks import APPROVE_ACTION, REJECT_ACTION
from bot.slack.ports import ServicePort
from commands.server import ServerConfig
from tests.fakes import payloads
from tests.fakes.slack_api import FakeSlackApi

BOT_TOKEN = "xoxb-1111-2222-testtoken"
APP_TOKEN = "xapp-1-A0LAB0001-3333-testtoken"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
OPERATOR = "U0OPER001"
APPROVER = "U0APPR001"
GROUP_APPROVER = "U0GRPAP01"
APPROVER_GROUP = "S0APPRGRP"
OUTSIDER = "U0OUTS001"
CHANNEL = payloads.CHANNEL


def make_config(**slack: Any) -> Config:
    base = SlackConfig(approvers=(APPROVER, APPROVER_GROUP), plan_ttl_minutes=15, two_person_rule=True)
    servers = {
        "vpn01": ServerConfig(name="vpn01", host="127.0.0.1", group="emea", public_name="vpn.example.com"),
        "vpn02": ServerConfig(name="vpn02", host="127.0.0.1", group="emea"),
        "vpn03": ServerConfig(name="vpn03", host="127.0.0.1", group="apac"),
    }
    return Config(slack=replace(base, **slack), servers=servers)


@dataclass
class Harness:
    """A bolt app on a fake Web API; `command()` and `click()` dispatch as Slack would (HTTP body)."""

    app: SstpApp
    service: Any
    slack_api: FakeSlackApi

    def command(self, text: str, *, user: str = OPERATOR, channel: str = CHANNEL, wait: bool = True) -> BoltResponse:
        form = payloads.slash_command(text, user=user, channel=channel, response_url=self.slack_api.response_url())
        response = self.app.dispatch(BoltRequest(body=payloads.form_body(form), headers={"content-type": ["application/x-www-form-urlencoded"]}))
        if wait:
            self.drain()
        return response

    def click(self, plan_id: int | str, *, approve: bool = True, user: str = APPROVER, channel: str = CHANNEL,
              message_ts: str | None = None, wait: bool = True) -> BoltResponse:
        """Click a button of plan `plan_id`'s card (`message_ts` defaults to the card the plan records,
        as Slack sends the message the button is on)."""
        if message_ts is None:
            message_ts = self._card_ts(plan_id)
        payload = payloads.block_actions(APPROVE_ACTION if approve else REJECT_ACTION, str(plan_id), user=user, channel=channel, message_ts=message_ts)
        response = self.app.dispatch(BoltRequest(body=payloads.actions_body(payload), headers={"content-type": ["application/x-www-form-urlencoded"]}))
        if wait:
            self.drain()
        return response

    def _card_ts(self, plan_id: int | str) -> str:
        try:
            return str(self.service.get_plan(int(plan_id)).message_ts or "1700000000.000100")
        except Exception:  # no such plan, or not a number: any message
            return "1700000000.000100"

    def drain(self, timeout: float = 20.0) -> None:
        time.sleep(0.02)  # a click dispatched from another thread may still be handing its work over
        assert self.app.sstp.drain(timeout), "work still running"

    def close(self) -> None:
        self.app.sstp.close()


def build_harness(service: ServicePort, config: Config, slack_api: FakeSlackApi, **kwargs: Any) -> Harness:
    client = make_web_client(BOT_TOKEN, slack_api.url)
    app = create_app(service, config, client=client, fleet_update_interval=kwargs.pop("fleet_update_interval", 0.0), **kwargs)
    return Harness(app=app, service=service, slack_api=slack_api)
