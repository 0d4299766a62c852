"""What Slack sends: slash-command forms, block_actions payloads, Socket Mode envelopes, signatures."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from tests.fakes.slack_api import TEAM_ID

APP_ID = "A0LAB0001"
CHANNEL = "C0OPS0001"
_TRIGGERS = itertools.count(738474920)


def _trigger_id() -> str:
    """Unique per payload, as Slack's are (so two commands never share a signature)."""
    return f"13345224609.{next(_TRIGGERS)}.{uuid.uuid4().hex}"


def slash_command(text: str, *, user: str = "U0OPER001", channel: str = CHANNEL, response_url: str = "",
                  enterprise: bool = False) -> dict[str, str]:
    form = {
        "token": "legacy-verification-token",
        "team_id": TEAM_ID,
        "team_domain": "lab",
        "channel_id": channel,
        "channel_name": "vpn-ops",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/sstp",
        "text": text,
        "api_app_id": APP_ID,
        "response_url": response_url,
        "trigger_id": _trigger_id(),
    }
    if enterprise:  # Enterprise Grid: the org's ID and name come with every command
        form.update(enterprise_id=ENTERPRISE["id"], enterprise_name=ENTERPRISE["name"], is_enterprise_install="false")
    return form


ENTERPRISE = {"id": "E0GRID0001", "name": "Grid Corp"}


def block_actions(
    action_id: str, value: str, *, user: str = "U0APPR001", channel: str = CHANNEL, message_ts: str = "1700000000.000100",
    user_team: str = TEAM_ID, enterprise: bool = False, team_null: bool = False, ephemeral: bool = False,
) -> dict[str, Any]:
    """A `block_actions` click as Slack sends it. The real shapes the review found missing:
    `enterprise` + `is_enterprise_install` on Enterprise Grid (user IDs start with W there), `team: null`
    for an org-wide install, a Slack Connect user whose `user.team_id` is another workspace's, and the
    container of an ephemeral message."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": None if team_null else {"id": TEAM_ID, "domain": "lab"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": user_team},
        "api_app_id": APP_ID,
        "token": "legacy-verification-token",
        "enterprise": ENTERPRISE if enterprise else None,
        "is_enterprise_install": bool(enterprise and team_null),
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": ephemeral},
        "trigger_id": _trigger_id(),
        "channel": {"id": channel, "name": "vpn-ops"},
        "message": {"type": "message", "ts": message_ts, "text": "card", "blocks": []},
        "response_url": "",
        "actions": [
            {
                "action_id": action_id,
                "block_id": f"sstp_plan_{value}",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return payload


def interactive_message(callback_id: str, value: str, *, user: str = "U0APPR001", channel: str = CHANNEL) -> dict[str, Any]:
    """A legacy message-attachment click (`interactive_message`): never a way to decide a plan."""
    return {
        "type": "interactive_message",
        "actions": [{"name": "approve", "type": "button", "value": value}],
        "callback_id": callback_id,
        "team": {"id": TEAM_ID, "domain": "lab"},
        "channel": {"id": channel, "name": "vpn-ops"},
        "user": {"id": user, "name": user.lower()},
        "action_ts": f"{time.time():.6f}",
        "message_ts": "1700000000.000100",
        "attachment_id": "1",
        "token": "legacy-verification-token",
        "is_app_unfurl": False,
        "response_url": "",
        "trigger_id": _trigger_id(),
    }


def form_body(command: dict[str, str]) -> str:
    return urlencode(command)


def actions_body(payload: dict[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack adds: X-Slack-Request-Timestamp and X-Slack-Signature (v0 HMAC-SHA256)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def envelope_slash_command(command: dict[str, str], envelope_id: str | None = None) -> dict[str, Any]:
    env: dict[str, Any] = {"type": "slash_commands", "accepts_response_payload": True, "payload": command}
    if envelope_id:
        env["envelope_id"] = envelope_id
    return env


def envelope_interactive(payload: dict[str, Any], envelope_id: str | None = None) -> dict[str, Any]:
    env: dict[str, Any] = {"type": "interactive", "accepts_response_payload": False, "payload": payload}
    if envelope_id:
        env["envelope_id"] = envelope_id
    return env
