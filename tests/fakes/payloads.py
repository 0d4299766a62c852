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


def slash_command(text: str, *, user: str = "U0OPER001", channel: str = CHANNEL, response_url: str = "") -> dict[str, str]:
    return {
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


def block_actions(
    action_id: str, value: str, *, user: str = "U0APPR001", channel: str = CHANNEL, message_ts: str = "1700000000.000100"
) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "lab"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
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
