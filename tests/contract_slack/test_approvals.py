"""DESIGN 6 and 8: the approval state machine driven from Slack buttons, with the real service, SQLite
and a lab server. Every refusal is private to the clicker and audited (who, what, when, outcome)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.request import BoltRequest

from bot.slack.blocks import APPROVE_ACTION
from commands.lab import Lab
from tests.contract_slack.conftest import (
    APPROVER,
    APPROVER2,
    APPROVER_GROUP,
    CHANNEL,
    GROUP_MEMBER,
    IIS,
    OPERATOR,
    OPERATOR2,
    OTHER_CHANNEL,
    OUTSIDER,
    audit_rows,
    build_stack,
)
from tests.fakes import payloads
from tests.fakes.blockkit import all_text, buttons
from tests.fakes.lab_stack import FakeClock, LabStack
from tests.fakes.slack_api import FakeSlackApi

REPO = Path(__file__).resolve().parents[2]


def check(stack: LabStack, user: str = OPERATOR) -> tuple[int, str]:
    stack.harness.command(f"check {IIS}", user=user)
    return stack.plan_from_last_report()


def ephemerals_to(stack: LabStack, user: str) -> list[str]:
    found = []
    for call in stack.slack_api.calls_to("chat.postEphemeral"):
        if call.body.get("user") == user:
            assert call.body.get("channel") == CHANNEL or call.body.get("channel") == OTHER_CHANNEL
            found.append(all_text(call.body))
    return found


def refusals_of(stack: LabStack, plan_id: int | None, actor: str) -> list[dict[str, Any]]:
    return [r for r in audit_rows(stack) if r["actor"] == actor and (plan_id is None or r["plan_id"] == plan_id)
            and str(r["outcome"]).startswith("refused")]


def assert_refused(stack: LabStack, plan_id: int, user: str, words: tuple[str, ...], ts: str, state: str = "PROPOSED",
                   card_untouched: bool = True, updates_before: int | None = None) -> None:
    said = ephemerals_to(stack, user)
    assert said, f"no private answer to {user}"
    assert any(w.lower() in said[-1].lower() for w in words), said[-1]
    assert stack.service.get_plan(plan_id).state == state
    assert stack.fix_scripts(IIS) == []
    rows = refusals_of(stack, plan_id, user)
    assert rows, f"the refusal of {user} was not audited"
    row = rows[-1]
    assert row["at"] and row["action"] in ("approve", "reject") and row["server"] in (IIS, None)
    if card_untouched and updates_before is not None:
        assert len(stack.updates_of(ts)) == updates_before, "the card was edited by a refused click"
    # nothing posted in the channel about the refusal
    assert not [c for c in stack.slack_api.calls_to("chat.postMessage") if "refus" in all_text(c.body).lower()]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def stack(tmp_path: Path, slack_api: FakeSlackApi, clock: FakeClock) -> Iterator[LabStack]:
    with Lab(["iis-binding"]) as lab:
        s = build_stack(lab, tmp_path, slack_api, clock=clock, plan_ttl_minutes=15)
        yield s
        s.close()


# --- the buttons ---------------------------------------------------------------------------------
def test_approve_is_primary_with_a_confirm_listing_the_steps_and_reject_is_danger(stack: LabStack) -> None:
    plan_id, ts = check(stack)
    report = stack.updates_of(ts)[-1]
    approve, reject = buttons(report)
    assert approve["action_id"] != reject["action_id"]
    assert approve["style"] == "primary"
    assert reject["style"] == "danger"
    assert approve["text"]["text"] == "Approve" and reject["text"]["text"] == "Reject"
    assert approve["value"] == reject["value"] == str(plan_id)
    confirm = approve.get("confirm")
    assert confirm, "Approve has no confirm dialog"
    assert "confirm" not in reject or reject["confirm"]
    text = confirm["text"]["text"]
    steps = stack.service.get_plan(plan_id).steps
    pos = -1
    for n, step in enumerate(steps, start=1):
        here = max(text.find(step["action"], pos + 1), text.find(step["description"][:30], pos + 1))
        assert here > pos, f"step {n} ({step['action']}) missing or out of order in {text!r}"
        pos = here
    assert len(text) <= 300 and len(confirm["title"]["text"]) <= 100
    # the whole report: unique action ids per message
    ids = [e["action_id"] for b in report["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert len(ids) == len(set(ids))


def test_disruptive_steps_are_flagged_with_the_number_of_connected_vpn_users(stack: LabStack) -> None:
    users = stack.lab.servers[IIS].twin.state.vpn_connections
    assert users > 0
    plan_id, ts = check(stack)
    report = stack.updates_of(ts)[-1]
    steps = stack.service.get_plan(plan_id).steps
    assert any(s["disruptive"] for s in steps) and not all(s["disruptive"] for s in steps)
    text = all_text(report)
    lines = text.split("\n")
    for n, step in enumerate(steps, start=1):
        (line,) = [ln for ln in lines if ln.startswith(f"{n}. ") and step["action"] in ln]
        flagged = "disruptive" in line.lower()
        assert flagged == bool(step["disruptive"]), line
    assert str(users) in text and "VPN user" in text


# --- refusals ------------------------------------------------------------------------------------
def test_non_approver_click_is_refused_privately_and_audited(stack: LabStack) -> None:
    plan_id, ts = check(stack)
    before = len(stack.updates_of(ts))
    for user in (OUTSIDER, OPERATOR2):
        stack.harness.click(plan_id, user=user, message_ts=ts)
        assert_refused(stack, plan_id, user, ("not an approver",), ts, updates_before=before)
        stack.harness.click(plan_id, approve=False, user=user, message_ts=ts)
        assert_refused(stack, plan_id, user, ("not an approver",), ts, updates_before=before)


def test_requester_cannot_approve_under_two_person_rule_but_another_approver_can(stack: LabStack) -> None:
    plan_id, ts = check(stack, user=APPROVER)
    before = len(stack.updates_of(ts))
    stack.harness.click(plan_id, user=APPROVER, message_ts=ts)
    assert_refused(stack, plan_id, APPROVER, ("two-person", "someone else"), ts, updates_before=before)
    stack.harness.click(plan_id, user=APPROVER2, message_ts=ts)
    assert stack.service.get_plan(plan_id).state == "SUCCEEDED"
    assert stack.fix_scripts(IIS) == [s["action"] for s in stack.service.get_plan(plan_id).steps]


def test_two_person_rule_with_approvers_as_a_user_group(tmp_path: Path, slack_api: FakeSlackApi) -> None:
    other_member = "U0GRPMEM2"
    slack_api.usergroups[APPROVER_GROUP] = [GROUP_MEMBER, other_member]
    with Lab(["iis-binding"]) as lab:
        stack = build_stack(lab, tmp_path, slack_api, approvers=(APPROVER_GROUP,))
        try:
            plan_id, ts = check(stack, user=GROUP_MEMBER)
            stack.harness.click(plan_id, user=GROUP_MEMBER, message_ts=ts)
            assert_refused(stack, plan_id, GROUP_MEMBER, ("two-person",), ts)
            stack.harness.click(plan_id, user=APPROVER, message_ts=ts)  # a user, not in the group
            assert_refused(stack, plan_id, APPROVER, ("not an approver",), ts)
            stack.harness.click(plan_id, user=other_member, message_ts=ts)
            assert stack.service.get_plan(plan_id).state == "SUCCEEDED"
        finally:
            stack.close()


def test_two_person_rule_off_lets_the_requester_approve(tmp_path: Path, slack_api: FakeSlackApi) -> None:
    with Lab(["iis-binding"]) as lab:
        stack = build_stack(lab, tmp_path, slack_api, two_person_rule=False)
        try:
            plan_id, ts = check(stack, user=APPROVER)
            stack.harness.click(plan_id, user=APPROVER, message_ts=ts)
            assert stack.service.get_plan(plan_id).state == "SUCCEEDED"
        finally:
            stack.close()


def test_click_after_plan_ttl_is_refused_audited_and_the_card_says_expired(stack: LabStack, clock: FakeClock) -> None:
    plan_id, ts = check(stack)
    report = stack.updates_of(ts)[-1]
    assert "expires" in all_text(report).lower()  # the card says until when it can be approved
    clock.advance(minutes=15, seconds=1)
    stack.harness.click(plan_id, user=APPROVER, message_ts=ts)
    assert_refused(stack, plan_id, APPROVER, ("expired",), ts, state="EXPIRED", card_untouched=False)
    card = stack.updates_of(ts)[-1]
    assert buttons(card) == [], "the expired card still offers Approve"
    assert "This plan expired" in all_text(card) and IIS in all_text(card)
    updates = len(stack.updates_of(ts))
    stack.harness.click(plan_id, approve=False, user=APPROVER2, message_ts=ts)  # a client that had not refreshed
    assert_refused(stack, plan_id, APPROVER2, ("expired",), ts, state="EXPIRED", card_untouched=False)
    assert len(stack.updates_of(ts)) == updates, "an expired card is updated once"
    sweep = stack.harness.app.sstp.card_sweep
    assert sweep is not None
    sweep.sweep()
    assert len(stack.updates_of(ts)) == updates, "the card sweep updated the expired card again"


def test_an_expired_plan_s_card_loses_its_buttons_without_a_click(stack: LabStack, clock: FakeClock) -> None:
    plan_id, ts = check(stack)
    sweep = stack.harness.app.sstp.card_sweep
    assert sweep is not None
    sweep.sweep()
    assert buttons(stack.updates_of(ts)[-1]), "a plan within its time lost its buttons"
    clock.advance(minutes=15, seconds=1)
    sweep.sweep()  # the bot's own pass, every 15 s in `serve`: it expires due plans and shows it
    assert stack.service.get_plan(plan_id).state == "EXPIRED"
    card = stack.updates_of(ts)[-1]
    assert buttons(card) == [] and "This plan expired" in all_text(card)
    updates = len(stack.updates_of(ts))
    sweep.sweep()
    assert len(stack.updates_of(ts)) == updates, "an expired card is updated once"
    assert stack.slack_api.calls_to("chat.postEphemeral") == []


def test_an_expired_plan_does_not_touch_a_card_that_moved_to_a_newer_plan(stack: LabStack, clock: FakeClock) -> None:
    # A scheduled sweep moves a server's alert card from its undecided plan to the newest plan's
    # (`SweepAlerts._carry_card`); the older plan expiring must not take the newer plan's buttons away.
    old_id, ts = check(stack)
    clock.advance(minutes=15, seconds=1)
    stack.harness.command(f"check {IIS}", user=OPERATOR2)
    new_id, new_ts = stack.plan_from_last_report()
    assert stack.service.get_plan(old_id).state == "EXPIRED" and new_ts != ts
    stack.service.attach_message(new_id, CHANNEL, ts)  # what the alert card's move records
    stack.harness.app.client.chat_update(channel=CHANNEL, ts=ts, text="the newer plan's report")
    updates = len(stack.updates_of(ts))
    sweep = stack.harness.app.sstp.card_sweep
    assert sweep is not None
    sweep.sweep()
    stack.harness.click(old_id, user=APPROVER, message_ts=ts)  # the old plan's button, from a stale client
    assert_refused(stack, old_id, APPROVER, ("expired",), ts, state="EXPIRED", card_untouched=False)
    assert len(stack.updates_of(ts)) == updates, "the card of the newer plan was overwritten"


def test_click_just_before_plan_ttl_is_accepted(stack: LabStack, clock: FakeClock) -> None:
    plan_id, ts = check(stack)
    clock.advance(minutes=14, seconds=50)
    stack.harness.click(plan_id, user=APPROVER, message_ts=ts)
    assert stack.service.get_plan(plan_id).state == "SUCCEEDED"


def test_click_on_a_superseded_plan_is_refused_and_its_card_lost_the_buttons(stack: LabStack) -> None:
    old_id, old_ts = check(stack)
    new_id, new_ts = check(stack, user=OPERATOR2)
    assert new_id != old_id and new_ts != old_ts
    assert stack.service.get_plan(old_id).state == "SUPERSEDED"
    assert buttons(stack.updates_of(old_ts)[-1]) == [], "the superseded card still offers Approve"
    stack.harness.click(old_id, user=APPROVER, message_ts=old_ts)
    assert_refused(stack, old_id, APPROVER, ("replaced", "superseded", "newer"), old_ts, state="SUPERSEDED", card_untouched=True)
    assert stack.service.get_plan(new_id).state == "PROPOSED"


def test_reject_updates_the_card_runs_nothing_and_a_later_approve_is_refused(stack: LabStack) -> None:
    plan_id, ts = check(stack)
    stack.harness.click(plan_id, approve=False, user=APPROVER, message_ts=ts)
    plan = stack.service.get_plan(plan_id)
    assert plan.state == "REJECTED" and plan.approver == APPROVER
    card = stack.updates_of(ts)[-1]
    assert "rejected" in all_text(card).lower() and buttons(card) == []
    assert stack.fix_scripts(IIS) == []
    stack.harness.click(plan_id, user=APPROVER2, message_ts=ts)
    assert_refused(stack, plan_id, APPROVER2, ("rejected",), ts, state="REJECTED", card_untouched=False)
    rows = [r for r in audit_rows(stack) if r["plan_id"] == plan_id and r["action"] == "reject" and r["outcome"] == "ok"]
    assert rows and rows[0]["actor"] == APPROVER


def test_requester_may_reject_own_plan(stack: LabStack) -> None:
    plan_id, ts = check(stack, user=APPROVER)
    stack.harness.click(plan_id, approve=False, user=APPROVER, message_ts=ts)
    assert stack.service.get_plan(plan_id).state == "REJECTED"


def test_double_click_runs_the_fix_once_and_the_second_click_is_told(stack: LabStack) -> None:
    plan_id, ts = check(stack)
    stack.harness.click(plan_id, user=APPROVER, message_ts=ts)
    stack.harness.click(plan_id, user=APPROVER, message_ts=ts)
    steps = [s["action"] for s in stack.service.get_plan(plan_id).steps]
    assert stack.fix_scripts(IIS) == steps
    said = ephemerals_to(stack, APPROVER)
    assert said and ("already" in said[-1].lower())
    assert refusals_of(stack, plan_id, APPROVER)


def test_concurrent_clicks_run_the_plan_exactly_once(stack: LabStack) -> None:
    plan_id, ts = check(stack)
    clickers = [APPROVER, APPROVER2] * 5
    barrier = threading.Barrier(len(clickers))

    def click(user: str) -> None:
        barrier.wait()
        stack.harness.click(plan_id, user=user, message_ts=ts, wait=False)

    threads = [threading.Thread(target=click, args=(u,)) for u in clickers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stack.harness.drain(60)
    steps = [s["action"] for s in stack.service.get_plan(plan_id).steps]
    assert stack.fix_scripts(IIS) == steps, "the plan ran more than once (or not at all)"
    assert stack.service.get_plan(plan_id).state == "SUCCEEDED"
    rows = [r for r in audit_rows(stack) if r["plan_id"] == plan_id and r["action"] == "approve"]
    assert sum(r["outcome"] == "ok" for r in rows) == 1
    assert sum(str(r["outcome"]).startswith("refused") for r in rows) == len(clickers) - 1
    assert len(stack.slack_api.calls_to("chat.postEphemeral")) == len(clickers) - 1


def test_the_card_is_updated_as_the_fix_progresses_and_shows_the_final_result(stack: LabStack) -> None:
    plan_id, ts = check(stack)
    n_before = len(stack.updates_of(ts))
    stack.harness.click(plan_id, user=APPROVER, message_ts=ts)  # the plan's own card
    steps = stack.service.get_plan(plan_id).steps
    updates = stack.updates_of(ts)[n_before:]
    texts = [all_text(u) for u in updates]
    assert len(updates) >= len(steps) + 1
    assert all(buttons(u) == [] for u in updates), "buttons remain after approval"
    assert f"<@{APPROVER}>" in texts[0]
    for k in range(1, len(steps) + 1):
        assert any(f"step {k} of {len(steps)}" in t.lower() for t in texts), f"no progress for step {k}"
    final = texts[-1]
    assert "fix applied" in final.lower()
    assert "healthy" in final.lower()  # the re-check
    assert stack.service.get_plan(plan_id).state == "SUCCEEDED"
    # no new top-level message for the fix
    assert len([c for c in stack.slack_api.calls_to("chat.postMessage") if not c.body.get("thread_ts")]) == 1


def test_state_changed_before_running_touches_nothing_tells_the_approver_and_is_audited(stack: LabStack) -> None:
    plan_id, ts = check(stack)
    twin = stack.lab.servers[IIS].twin
    twin.delete_httpsys_binding("[::]:443")
    actions = list(twin.actions)
    stack.harness.click(plan_id, user=APPROVER, message_ts=ts)
    assert stack.fix_scripts(IIS) == []
    assert twin.actions == actions
    assert stack.service.get_plan(plan_id).state == "FAILED"
    said = ephemerals_to(stack, APPROVER)
    assert said and "changed" in said[-1].lower()
    assert "changed" in all_text(stack.updates_of(ts)[-1]).lower()
    trail = [r for r in audit_rows(stack) if r["plan_id"] == plan_id]
    assert any("state changed" in json.dumps(r["details"]) or "changed" in str(r["outcome"]) for r in trail)


def test_click_from_a_channel_not_allowed_is_refused_and_audited(tmp_path: Path, slack_api: FakeSlackApi) -> None:
    with Lab(["iis-binding"]) as lab:
        stack = build_stack(lab, tmp_path, slack_api, allowed_channels=(CHANNEL,))
        try:
            plan_id, ts = check(stack)
            stack.harness.click(plan_id, user=APPROVER, channel=OTHER_CHANNEL, message_ts=ts)
            assert stack.service.get_plan(plan_id).state == "PROPOSED"
            assert ephemerals_to(stack, APPROVER)
            assert refusals_of(stack, plan_id, APPROVER)
            assert stack.fix_scripts(IIS) == []
        finally:
            stack.close()


def _click_value(stack: LabStack, value: str, user: str = APPROVER) -> None:
    payload = payloads.block_actions(APPROVE_ACTION, value, user=user)
    stack.harness.app.dispatch(BoltRequest(body=payloads.actions_body(payload),
                                           headers={"content-type": ["application/x-www-form-urlencoded"]}))
    stack.harness.drain()


def test_forged_button_value_is_refused_and_audited(stack: LabStack) -> None:
    check(stack)
    _click_value(stack, "1; DROP TABLE plans")
    assert ephemerals_to(stack, APPROVER)
    assert refusals_of(stack, None, APPROVER)
    assert stack.fix_scripts(IIS) == []


def test_approve_of_a_plan_that_does_not_exist_is_audited(stack: LabStack) -> None:
    check(stack)
    _click_value(stack, "424242")
    assert ephemerals_to(stack, APPROVER)
    assert refusals_of(stack, None, APPROVER), audit_rows(stack)


@pytest.mark.slow
def test_every_refusal_is_in_the_plan_audit_trail_read_with_the_cli(stack: LabStack, clock: FakeClock) -> None:
    plan_id, ts = check(stack, user=APPROVER)
    stack.harness.click(plan_id, user=OUTSIDER, message_ts=ts)                 # not an approver
    stack.harness.click(plan_id, approve=False, user=OUTSIDER, message_ts=ts)  # not an approver (reject)
    stack.harness.click(plan_id, user=APPROVER, message_ts=ts)                 # own request
    check(stack, user=OPERATOR)                                                # supersedes plan_id
    stack.harness.click(plan_id, user=APPROVER2, message_ts=ts)                # superseded
    new_id, new_ts = stack.plan_from_last_report()
    clock.advance(minutes=16)
    stack.harness.click(new_id, user=APPROVER2, message_ts=new_ts)             # expired

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SSTP_BOT_CONFIG", None)

    def trail(pid: int) -> list[dict[str, Any]]:
        out = subprocess.run([sys.executable, "-m", "bot", "--config", str(stack.config.path), "history", "--plan", str(pid), "--json"],
                             capture_output=True, text=True, env=env, cwd=str(REPO), timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    events = trail(plan_id)
    for event in events:
        assert {"at", "actor", "action", "outcome"} <= set(event) and event["at"] and event["actor"]
    refused = [(e["actor"], e["action"]) for e in events if str(e["outcome"]).startswith("refused")]
    assert refused.count((OUTSIDER, "approve")) == 1
    assert refused.count((OUTSIDER, "reject")) == 1
    assert (APPROVER, "approve") in refused
    assert (APPROVER2, "approve") in refused
    outcomes = " ".join(str(e["outcome"]) + json.dumps(e.get("details")) for e in events if e["actor"] == APPROVER2)
    assert "supersed" in outcomes.lower()
    newer = trail(new_id)
    assert any(e["actor"] == APPROVER2 and str(e["outcome"]).startswith("refused") and "expire" in (str(e["outcome"]) + json.dumps(e.get("details"))).lower()
               for e in newer), newer


def test_empty_approvers_means_nobody_can_approve(tmp_path: Path, slack_api: FakeSlackApi) -> None:
    with Lab(["iis-binding"]) as lab:
        stack = build_stack(lab, tmp_path, slack_api, approvers=())
        try:
            plan_id, ts = check(stack)
            for user in (APPROVER, OPERATOR):
                stack.harness.click(plan_id, user=user, message_ts=ts)
                assert_refused(stack, plan_id, user, ("not an approver",), ts)
        finally:
            stack.close()
