"""Scenarios where nothing may change on a server: an unreachable server and an unknown one. Real
Service + SQLite + lab (real PSRP) + fake Slack Web API. (Reject, refusals, expiry and superseded plans
are the approval contract: tests/contract_slack/test_approvals.py.)

The lab is shared by the module (none of these flows may touch a twin; each test checks it did not);
every test gets a fresh database, service and bolt app.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.lab import Lab
from tests.fakes.blockkit import all_text, buttons
from tests.fakes.harness import APPROVER, APPROVER_GROUP, CHANNEL
from tests.fakes.lab_stack import FakeClock, LabStack, ScriptRecorder, assert_every_message_within_limits
from tests.fakes.slack_api import FakeSlackApi

SERVER = "vpn-iis"
DOWN = "vpn-down"


@pytest.fixture(scope="module")
def shared_lab() -> Iterator[tuple[Lab, ScriptRecorder]]:
    with Lab(["iis-binding"], extra_servers=[(DOWN, "healthy")], faults={DOWN: ["refused"]}) as lab:
        yield lab, ScriptRecorder(lab)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def stack(shared_lab: tuple[Lab, ScriptRecorder], tmp_path: Path, slack_api: FakeSlackApi, clock: FakeClock) -> Iterator[LabStack]:
    lab, recorder = shared_lab
    twin = lab.servers[SERVER].twin
    state_before, actions_before = twin.copy_state(), len(twin.actions)
    s = LabStack.build(
        lab, tmp_path, slack_api, recorder=recorder, clock=clock,
        approvers=(APPROVER, APPROVER_GROUP), two_person_rule=True, plan_ttl_minutes=15,
    )
    yield s
    s.close()
    changed = twin.copy_state() != state_before or len(twin.actions) != actions_before
    with twin.lock:  # put the shared twin back, so one failure does not cascade into the next tests
        twin.state = state_before
        del twin.actions[actions_before:]
    assert not changed, "the twin was changed"
    assert_every_message_within_limits(slack_api)


def test_unreachable_server_reports_the_error_kind_without_buttons(stack: LabStack, slack_api: FakeSlackApi) -> None:
    stack.harness.command(f"check {DOWN}")
    (posted,) = slack_api.calls_to("chat.postMessage")
    assert "Checking" in all_text(posted.body)
    (report,) = slack_api.calls_to("chat.update")
    ((channel, ts),) = slack_api.messages  # the one message posted, updated in place
    assert (report.body["channel"], report.body["ts"]) == (channel, ts) == (CHANNEL, ts)
    text = all_text(report.body)
    assert f"*{DOWN}*: could not be checked" in text
    assert "Server unreachable" in text and "(`unreachable`)" in text
    assert buttons(report.body) == []
    (record,) = stack.service.status()
    assert (record.server, record.status, record.error_kind, record.plan_id) == (DOWN, "error", "unreachable", None)
    message = record.error_message or ""
    assert message and message in text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert "refused the connection" in message and f"port {stack.lab.servers[DOWN].port}" in message, message
    assert "Traceback" not in text
    assert stack.lab.servers[DOWN].requests == []


@pytest.mark.parametrize("text", ["check vpn-nosuch", f"check {SERVER} vpn-nosuch", "check group:nosuch"])
def test_unknown_server_is_answered_privately_and_nothing_runs(stack: LabStack, slack_api: FakeSlackApi, text: str) -> None:
    stack.harness.command(text)
    (answer,) = slack_api.calls_to("response_url")
    assert answer.body.get("response_type") == "ephemeral"
    shown = all_text(answer.body)
    assert "nosuch" in shown and ("Unknown server" in shown or "group" in shown), shown
    assert slack_api.calls_to("chat.postMessage") == [] and slack_api.calls_to("chat.update") == []
    assert stack.lab_requests() == 0 and stack.scripts[SERVER] == []
    assert stack.service.status() == [] and stack.service.history() == []
