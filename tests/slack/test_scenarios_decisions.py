"""Scenarios where nothing may change on a server: reject, refusals, expiry, superseded plans, an
unreachable server and an unknown one. Real Service + SQLite + lab (real PSRP) + fake Slack Web API.

The lab is shared by the module (none of these flows may touch a twin; each test checks it did not);
every test gets a fresh database, service and bolt app.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.slack import messages
from commands.lab import Lab
from tests.fakes.blockkit import all_text, buttons
from tests.fakes.harness import APPROVER, APPROVER_GROUP, CHANNEL, OPERATOR, OUTSIDER
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


def check(stack: LabStack, user: str = OPERATOR) -> tuple[int, str]:
    stack.harness.command(f"check {SERVER}", user=user)
    plan_id, ts = stack.plan_from_last_report()
    assert stack.service.get_plan(plan_id).state == "PROPOSED"
    return plan_id, ts


def assert_refused(stack: LabStack, plan_id: int, ts: str, user: str, text: str, updates_before: int) -> None:
    """Refused ephemerally, nothing ran, and the card is untouched."""
    (eph,) = stack.ephemerals()
    assert (eph["user"], eph["channel"]) == (user, CHANNEL)
    assert text in eph["text"], eph["text"]
    assert len(stack.updates_of(ts)) == updates_before, "the card is untouched"
    assert stack.fix_scripts() == [], "nothing ran"


def test_reject_updates_the_card_and_runs_nothing(stack: LabStack, slack_api: FakeSlackApi) -> None:
    plan_id, ts = check(stack)
    before = len(slack_api.calls_to("chat.update"))
    stack.harness.click(plan_id, approve=False, user=APPROVER)
    (update,) = [c.body for c in slack_api.calls_to("chat.update")[before:]]
    assert (update["channel"], update["ts"]) == (CHANNEL, ts)
    assert f"Rejected by <@{APPROVER}>. Nothing was changed." in all_text(update)
    assert buttons(update) == []
    assert stack.ephemerals() == []
    assert stack.scripts[SERVER] == ["probe"] and stack.commands(SERVER) == 1
    plan = stack.service.get_plan(plan_id)
    assert (plan.state, plan.approver) == ("REJECTED", APPROVER)
    assert stack.audit(plan_id) == [("propose", OPERATOR, "ok"), ("reject", APPROVER, "ok")]


def test_non_approver_is_refused_privately_and_audited(stack: LabStack) -> None:
    plan_id, ts = check(stack)
    updates = len(stack.updates_of(ts))
    stack.harness.click(plan_id, user=OUTSIDER)
    assert_refused(stack, plan_id, ts, OUTSIDER, messages.REFUSED_NOT_APPROVER, updates)
    assert stack.service.get_plan(plan_id).state == "PROPOSED"
    assert stack.audit(plan_id)[-1] == ("approve", OUTSIDER, "refused: not an approver")
    # Reject is refused the same way.
    stack.harness.click(plan_id, approve=False, user=OUTSIDER)
    assert stack.service.get_plan(plan_id).state == "PROPOSED"
    assert stack.audit(plan_id)[-1] == ("reject", OUTSIDER, "refused: not an approver")
    assert len(stack.updates_of(ts)) == updates


def test_requester_cannot_approve_own_plan(stack: LabStack) -> None:
    plan_id, ts = check(stack, user=APPROVER)
    updates = len(stack.updates_of(ts))
    stack.harness.click(plan_id, user=APPROVER)
    assert_refused(stack, plan_id, ts, APPROVER, messages.REFUSED_OWN_REQUEST, updates)
    assert stack.service.get_plan(plan_id).state == "PROPOSED"
    assert stack.audit(plan_id) == [("propose", APPROVER, "ok"), ("approve", APPROVER, "refused: two-person rule")]


def test_click_after_expiry_is_refused_and_the_plan_expires(stack: LabStack, clock: FakeClock) -> None:
    plan_id, ts = check(stack)
    plan = stack.service.get_plan(plan_id)
    assert (plan.expires_at - plan.created_at).total_seconds() == 15 * 60
    updates = len(stack.updates_of(ts))
    clock.advance(minutes=14, seconds=59)
    assert stack.service.get_plan(plan_id).state == "PROPOSED"
    clock.advance(seconds=2)
    stack.harness.click(plan_id, user=APPROVER)
    assert_refused(stack, plan_id, ts, APPROVER, "has expired", updates)
    assert stack.service.get_plan(plan_id).state == "EXPIRED"
    audit = stack.audit(plan_id)
    assert [a for a, _, _ in audit] == ["propose", "expire", "approve"]
    assert audit[-1][1:] == (APPROVER, "refused")
    assert stack.scripts[SERVER] == ["probe"]


def test_click_on_a_superseded_plan_is_refused(stack: LabStack) -> None:
    first, first_ts = check(stack)
    second, second_ts = check(stack)
    assert second != first and second_ts != first_ts
    assert stack.service.get_plan(first).state == "SUPERSEDED"
    # The second check took the buttons off the first card.
    retired = stack.updates_of(first_ts)[-1]
    assert messages.PLAN_STATE_LINES["SUPERSEDED"] in all_text(retired) and buttons(retired) == []
    assert buttons(stack.updates_of(second_ts)[-1]) != []
    updates = len(stack.updates_of(first_ts))
    stack.harness.click(first, user=APPROVER)  # e.g. from a client that had not refreshed the card
    assert_refused(stack, first, first_ts, APPROVER, "replaced by a newer check", updates)
    assert stack.service.get_plan(first).state == "SUPERSEDED"
    assert stack.service.get_plan(second).state == "PROPOSED"
    assert stack.scripts[SERVER] == ["probe", "probe"]
    audit = stack.audit(first)
    assert [a for a, _, _ in audit] == ["propose", "supersede", "approve"]
    assert audit[-1][1:] == (APPROVER, "refused")


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
