"""DESIGN 8: fleet checks post one summary message updated as servers finish, details in its thread."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.lab import Lab
from tests.contract_slack.conftest import APPROVER, CHANNEL, OPERATOR, build_stack
from tests.fakes.blockkit import all_text, buttons
from tests.fakes.lab_stack import LabStack
from tests.fakes.slack_api import FakeSlackApi

GROUPS = {"vpn01": "emea", "vpn02": "emea", "vpn03": "apac", "vpn04": "apac", "vpn05": "apac", "vpn06": "apac"}


@pytest.fixture
def fleet(tmp_path: Path, slack_api: FakeSlackApi) -> Iterator[LabStack]:
    with Lab(["fleet"]) as lab:
        assert sorted(lab.servers) == sorted(GROUPS)
        s = build_stack(lab, tmp_path, slack_api, groups=GROUPS)
        yield s
        s.close()


def top_level(slack_api: FakeSlackApi) -> list[dict]:
    return [c.body for c in slack_api.calls_to("chat.postMessage") if not c.body.get("thread_ts")]


def header_servers(slack_api: FakeSlackApi, thread_ts: str) -> list[str]:
    found = []
    for call in slack_api.calls_to("chat.postMessage"):
        if call.body.get("thread_ts") != thread_ts:
            continue
        for block in call.body.get("blocks") or []:
            if block["type"] == "header":
                m = re.match(r"SSTP check: (\S+)", block["text"]["text"])
                if m:
                    found.append(m.group(1))
    return found


@pytest.mark.parametrize(("text", "expected"), [
    ("check all", sorted(GROUPS)),
    ("check ALL", sorted(GROUPS)),
    ("check group:emea", ["vpn01", "vpn02"]),
    ("check group:APAC", ["vpn03", "vpn04", "vpn05", "vpn06"]),
    ("check vpn02 vpn04", ["vpn02", "vpn04"]),
])
def test_fleet_check_one_summary_updated_as_servers_finish_details_in_thread(fleet: LabStack, slack_api: FakeSlackApi, text: str, expected: list[str]) -> None:
    fleet.harness.command(text, user=OPERATOR)
    (summary,) = top_level(slack_api)
    assert summary["channel"] == CHANNEL
    # the summary's ts: the one every thread reply points to
    threads = {c.body["thread_ts"] for c in slack_api.calls_to("chat.postMessage") if c.body.get("thread_ts")}
    assert len(threads) == 1, threads
    (sts,) = threads
    updates = [c.body for c in slack_api.calls_to("chat.update") if c.body.get("ts") == sts]
    assert len(updates) >= 2, "the summary was not updated as servers finished"
    first_text = all_text(summary)
    for name in expected:
        assert name in first_text
    final = all_text(updates[-1])
    for name in expected:
        assert name in final
    assert ":hourglass" not in final, "the final summary still shows servers being checked"
    assert str(len(expected)) in final
    # details: one report per server in the thread, none in the channel
    assert sorted(header_servers(slack_api, sts)) == expected
    for name in GROUPS:
        assert fleet.scripts[name] == (["probe"] if name in expected else []), name


def test_fleet_reports_in_the_thread_carry_approve_buttons_that_work(fleet: LabStack, slack_api: FakeSlackApi) -> None:
    fleet.harness.command("check all", user=OPERATOR)
    with_buttons = [c.body for c in slack_api.calls_to("chat.postMessage") if c.body.get("thread_ts") and buttons(c.body)]
    assert with_buttons, "no fixable server reported a plan in the thread"
    report = next(r for r in with_buttons if "vpn02" in all_text(r))
    plan_id = int(buttons(report)[0]["value"])
    plan = fleet.service.get_plan(plan_id)
    assert plan.server == "vpn02" and plan.message_ts and plan.message_ts != report["thread_ts"]
    fleet.harness.click(plan_id, user=APPROVER, message_ts=plan.message_ts)
    assert fleet.service.get_plan(plan_id).state == "SUCCEEDED"
    assert "fix applied" in all_text(fleet.updates_of(plan.message_ts)[-1]).lower()


def test_fleet_summary_counts_healthy_unhealthy_and_errors(fleet: LabStack, slack_api: FakeSlackApi) -> None:
    fleet.harness.command("check all", user=OPERATOR)
    (_summary,) = top_level(slack_api)
    sts = next(c.body["thread_ts"] for c in slack_api.calls_to("chat.postMessage") if c.body.get("thread_ts"))
    final = all_text([c.body for c in slack_api.calls_to("chat.update") if c.body.get("ts") == sts][-1])
    statuses = {r.server: r.status for r in fleet.service.status()}
    healthy = sum(1 for s in statuses.values() if s == "healthy")
    assert f"{healthy} healthy" in final, final
