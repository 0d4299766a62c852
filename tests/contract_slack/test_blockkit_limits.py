"""DESIGN 8 reports rendered at the extremes must stay within Slack's Block Kit limits: 50 blocks per
message, 3000 characters per section text, 150 per header, button value <= 2000, unique action_id per
message, confirm dialog text <= 300. What does not fit goes to the thread."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from bot.slack import blocks
from bot.slack.blocks import SlackMessage
from commands.model import CheckResult, Finding, Plan, Step
from tests.fakes.blockkit import assert_slack_limits, buttons

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LONG_NAME = "v" * 64


def check_limits(message: SlackMessage) -> dict[str, Any]:
    payload = message.payload()
    assert_slack_limits(payload)
    ids = [e["action_id"] for b in payload["blocks"] if b["type"] == "actions" for e in b["elements"] if "action_id" in e]
    assert len(ids) == len(set(ids)), ids
    block_ids = [b["block_id"] for b in payload["blocks"] if "block_id" in b]
    assert len(block_ids) == len(set(block_ids))
    for element in buttons(payload):
        assert len(element["text"]["text"]) <= 75
        if "confirm" in element:
            c = element["confirm"]
            assert len(c["title"]["text"]) <= 100 and len(c["confirm"]["text"]) <= 30 and len(c["deny"]["text"]) <= 30
    for reply in message.thread:
        check_limits(reply)
    return payload


def finding(n: int, evidence_size: int = 100, title_size: int = 60) -> Finding:
    return Finding(
        id="SSTP_HASH_MISMATCH",
        severity=["critical", "warning", "info"][n % 3],
        title=f"Finding {n} " + "T" * title_size + " <!channel> & *bold*",
        detail="D" * 500 + " <@U123> ```",
        evidence={f"key{k}": "E" * evidence_size + " ``` <https://x>" for k in range(5)},
        fixable=True,
    )


def plan(steps: int, desc_size: int = 80) -> Plan:
    return Plan(
        steps=tuple(
            Step(action="delete_httpsys_binding", params={"Endpoint": f"10.0.0.{i}:443"},
                 description=f"Step {i} " + "d" * desc_size, disruptive=i % 2 == 0)
            for i in range(steps)
        ),
        fingerprint="F" * 64,
    )


@pytest.mark.parametrize(("n_findings", "evidence", "n_steps", "desc"), [
    (1, 10, 1, 10),
    (4, 100, 5, 200),
    (60, 100, 3, 80),
    (10, 20_000, 5, 80),
    (45, 5000, 60, 2900),
    (0, 0, 200, 500),
])
def test_report_within_limits(n_findings: int, evidence: int, n_steps: int, desc: int) -> None:
    result = CheckResult(server=LONG_NAME, checked_at=NOW, findings=[finding(i, evidence) for i in range(n_findings)],
                         plan=plan(n_steps, desc) if n_steps else None, vpn_connections=1234)
    payload = check_limits(blocks.report(result, plan_id=10**17, expires_at=NOW + timedelta(minutes=15)))
    approve = [b for b in buttons(payload) if b["action_id"] == "sstp_approve"]
    if n_steps:
        assert approve and approve[0]["style"] == "primary" and approve[0].get("confirm")
        text = approve[0]["confirm"]["text"]["text"]
        assert str(n_steps) in text or n_steps > 20  # lists steps (numbered) when they fit
    # server-supplied text cannot ping the channel
    assert "<!channel>" not in str(payload)


def test_error_report_within_limits() -> None:
    result = CheckResult(server=LONG_NAME, checked_at=NOW, error_kind="script_failed", error_message="x" * 50_000)
    check_limits(blocks.report(result))


def test_fleet_summary_with_many_servers_within_limits() -> None:
    lines = [blocks.FleetLine(server=f"{LONG_NAME[:60]}{i:04d}", status=["healthy", "unhealthy", "error", None][i % 4],
                              findings=i, error_kind="unreachable") for i in range(2000)]
    check_limits(blocks.fleet_summary("all", lines))
    check_limits(blocks.fleet_summary("group:" + "g" * 64, lines[:3]))


def test_plan_card_after_a_long_fix_within_limits() -> None:
    p = plan(80, 1000)
    record = SimpleNamespace(id=7, server=LONG_NAME, state="FAILED", steps=[s.to_json() for s in p.steps])
    outcome = SimpleNamespace(
        steps=[SimpleNamespace(ok=i % 3 != 0, changed=True, action=s.action, detail="x" * 4000) for i, s in enumerate(p.steps)],
        after=CheckResult(server=LONG_NAME, checked_at=NOW, findings=[finding(i, 3000) for i in range(70)]),
    )
    check_limits(blocks.plan_card(record, ["Approved by <@U1>", "y" * 5000], outcome=outcome))
    check_limits(blocks.plan_card(record, ["Approved by <@U1>", "Running step 3 of 80"], current_step=3))


def test_history_status_servers_help_within_limits() -> None:
    checks = [SimpleNamespace(kind="check", at=NOW, check=SimpleNamespace(id=i, actor="U0OPER001", status="unhealthy", error_kind=None,
                                                                         findings=[{}] * 5), plan=None) for i in range(100)]
    check_limits(blocks.history(LONG_NAME, checks))
    records = [SimpleNamespace(status="unhealthy", server=f"s{i}" + "x" * 60, finished_at=NOW, started_at=NOW, error_kind=None,
                               findings=[{}] * 3, plan_id=i) for i in range(1000)]
    check_limits(blocks.status(records))
    servers = [SimpleNamespace(name=f"s{i}" + "x" * 60, host="h" * 200, port=5986, group="g" * 64, public_name="p" * 200) for i in range(1000)]
    check_limits(blocks.servers(servers))
    for operator in (True, False):
        for approver in (True, False):
            check_limits(blocks.help_message(operator=operator, approver=approver, two_person_rule=True, channel_allowed=True))
