"""Fleet check in Slack against four lab servers (one broken): one summary message updated as servers
finish, one report per server in its thread, the broken one with the buttons.

Real Service + SQLite + lab (real PSRP) + fake Slack Web API; the lab is shared (checks change nothing).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.lab import Lab
from tests.fakes.blockkit import all_text, assert_slack_limits, buttons
from tests.fakes.harness import APPROVER, CHANNEL, OPERATOR
from tests.fakes.lab_stack import LabStack, ScriptRecorder, assert_every_message_within_limits
from tests.fakes.slack_api import FakeSlackApi

BROKEN = "vpn-iis"
HEALTHY = ("vpn-healthy", "vpn-h2", "vpn-h3")
PROGRESS_RE = re.compile(r"(\d+) of 4 checked")


@pytest.fixture(scope="module")
def shared_lab() -> Iterator[tuple[Lab, ScriptRecorder]]:
    with Lab(["healthy", "iis-binding"], extra_servers=[("vpn-h2", "healthy"), ("vpn-h3", "healthy")]) as lab:
        assert sorted(lab.servers) == sorted([BROKEN, *HEALTHY])
        yield lab, ScriptRecorder(lab)


@pytest.fixture
def stack(shared_lab: tuple[Lab, ScriptRecorder], tmp_path: Path, slack_api: FakeSlackApi) -> Iterator[LabStack]:
    lab, recorder = shared_lab
    s = LabStack.build(lab, tmp_path, slack_api, recorder=recorder, approvers=(APPROVER,), two_person_rule=True)
    yield s
    s.close()
    assert_every_message_within_limits(slack_api)


@pytest.mark.parametrize("target", ["all", "group:lab"])
def test_fleet_check_summary_and_details_in_the_thread(stack: LabStack, slack_api: FakeSlackApi, target: str) -> None:
    stack.harness.command(f"check {target}", user=OPERATOR)

    posts = slack_api.calls_to("chat.postMessage")
    summary = [p.body for p in posts if not p.body.get("thread_ts")]
    assert len(summary) == 1, [all_text(p.body) for p in posts]
    assert f"SSTP fleet check: {target}" in all_text(summary[0])
    summary_ts = next(ts for (channel, ts) in slack_api.messages if channel == CHANNEL and "fleet check" in all_text(slack_api.messages[(channel, ts)]))

    # Per-server reports (and their long-evidence replies), each a reply in the summary's thread.
    replies = [p.body for p in posts if p.body.get("thread_ts")]
    assert all(r["thread_ts"] == summary_ts and r["channel"] == CHANNEL for r in replies)
    details = [r for r in replies if "SSTP check: " in all_text(r)]
    by_server = {}
    for d in details:
        (name,) = [s for s in (BROKEN, *HEALTHY) if f"SSTP check: {s}\n" in all_text(d)]
        by_server[name] = d
    assert sorted(by_server) == sorted([BROKEN, *HEALTHY]) and len(details) == 4
    assert all(buttons(r) == [] for r in replies if r not in details)
    for name in HEALTHY:
        assert f"*{name}*: healthy" in all_text(by_server[name]) and buttons(by_server[name]) == []
    broken = by_server[BROKEN]
    assert "SSTP_HASH_MISMATCH" in all_text(broken)
    found = re.search(rf"\*{BROKEN}\*: (\d+) findings", all_text(broken))
    assert found is not None
    (approve, reject) = buttons(broken)
    plan_id = int(approve["value"])
    assert reject["value"] == approve["value"]
    plan = stack.service.get_plan(plan_id)
    detail_ts = next(ts for (channel, ts), body in slack_api.messages.items() if "SSTP check: vpn-iis" in all_text(body))
    assert (plan.state, plan.channel, plan.message_ts, plan.server) == ("PROPOSED", CHANNEL, detail_ts, BROKEN)

    # The summary was edited in place as servers finished, ending with the totals.
    updates = [c.body for c in slack_api.calls_to("chat.update") if c.body["ts"] == summary_ts]
    assert updates and all(c.body["ts"] == summary_ts for c in slack_api.calls_to("chat.update"))
    # One edit per finished server (the harness sets no throttle), plus the final one; a server that
    # finishes while the last one is settling may see its edit folded into that final edit, which
    # carries its line already (results arrive on several threads).
    assert 2 <= len(updates) <= 4 + 1, [all_text(u) for u in updates]
    done = [int(m.group(1)) if (m := PROGRESS_RE.search(all_text(u))) else 4 for u in updates]
    assert done == sorted(done) and done[-1] == 4, done
    rows_done = [sum(f"{n}: " in all_text(u) for n in (BROKEN, *HEALTHY)) for u in updates]
    assert rows_done == sorted(rows_done) and rows_done[-1] == 4, rows_done
    final = all_text(updates[-1])
    assert "4 checked: 3 healthy, 1 with findings, 0 could not be checked" in final
    assert f"{BROKEN}: {found.group(1)} findings" in final and all(f"{n}: healthy" in final for n in HEALTHY)
    for body in [*summary, *details, *updates]:
        assert_slack_limits(body)

    # Each server was probed exactly once, and nothing else ran.
    assert all(stack.scripts[n] == ["probe"] for n in stack.lab.servers)
    assert sorted(r.server for r in stack.service.status()) == sorted([BROKEN, *HEALTHY])
