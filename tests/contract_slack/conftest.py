"""Independent contract tests of the Slack side (DESIGN sections 1, 6, 7, 8).

Everything runs the real code paths: the bolt app (slack-bolt's own dispatch, signature checks in HTTP
mode), the real `bot.service.Service` on a fresh SQLite file, lab RRAS servers reached over real
WinRM/PSRP on 127.0.0.1, and a fake Slack Web API on 127.0.0.1 that records what the bot sent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bot.config import load_config
from bot.service import build_service
from commands.lab import Lab
from tests.fakes.harness import build_harness
from tests.fakes.lab_stack import LabStack, ScriptRecorder, assert_every_message_within_limits
from tests.fakes.slack_api import FakeSlackApi

OPERATOR = "U0OPER001"
OPERATOR2 = "U0OPER002"
APPROVER = "U0APPR001"
APPROVER2 = "U0APPR002"
GROUP_MEMBER = "U0GRPMEM1"
OUTSIDER = "U0OUTS001"
OPERATOR_GROUP = "S0OPSGRP1"
APPROVER_GROUP = "S0APRGRP1"
CHANNEL = "C0OPS0001"
OTHER_CHANNEL = "C0RANDOM9"
IIS = "vpn-iis"
HEALTHY = "vpn-healthy"


@pytest.fixture
def slack_api() -> Iterator[FakeSlackApi]:
    with FakeSlackApi() as api:
        yield api
    # Whatever a test did, nothing the bot sent may break Slack's limits.
    assert_every_message_within_limits(api)


def build_stack(
    lab: Lab,
    tmp_path: Path,
    slack_api: FakeSlackApi,
    *,
    clock: Callable[[], datetime] | None = None,
    groups: dict[str, str] | None = None,
    **slack: Any,
) -> LabStack:
    """Like LabStack.build, plus inventory groups (server -> group) set before the service is built."""
    db = tmp_path / "sstp-bot.db"
    config = load_config(lab.write_config(tmp_path / "lab.toml", database_url=f"sqlite:///{db}"), {})
    slack.setdefault("approvers", (APPROVER, APPROVER2))
    slack.setdefault("two_person_rule", True)
    config = replace(config, slack=replace(config.slack, **slack))
    if groups:
        servers = {name: replace(s, group=groups.get(name, s.group)) for name, s in config.servers.items()}
        config = replace(config, servers=servers)
    from datetime import UTC

    clock = clock or (lambda: datetime.now(UTC))
    service = build_service(config, {}, clock)
    recorder = ScriptRecorder(lab)
    recorder.clear()
    lab.clear_logs()
    harness = build_harness(service, config, slack_api)
    return LabStack(lab, config, service, harness, slack_api, recorder, clock)


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(["iis-binding", "healthy"]) as lab:
        yield lab


@pytest.fixture
def stack(lab: Lab, tmp_path: Path, slack_api: FakeSlackApi) -> Iterator[LabStack]:
    s = build_stack(lab, tmp_path, slack_api)
    yield s
    s.close()


def audit_rows(stack: LabStack) -> list[dict[str, Any]]:
    """Every audit event in the bot's database (plan-scoped or not), oldest first."""
    url = stack.config.database.url
    path = url.split("sqlite:///", 1)[1]
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM audit ORDER BY id")]
    finally:
        con.close()


def outgoing_public(slack_api: FakeSlackApi) -> list[Any]:
    """Messages posted or edited in the channel (not private answers)."""
    return slack_api.calls_to("chat.postMessage") + slack_api.calls_to("chat.update")
