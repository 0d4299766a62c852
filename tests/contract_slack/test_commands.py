"""DESIGN 8: every `/sstp` form, well-formed or not. Malformed input gets a clear private answer and
nothing connects to any server; well-formed commands are acknowledged at once and answered in place."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.contract_slack.conftest import (
    APPROVER,
    CHANNEL,
    HEALTHY,
    IIS,
    OPERATOR,
    OUTSIDER,
    audit_rows,
    build_stack,
    outgoing_public,
)
from tests.fakes.blockkit import all_text, buttons
from tests.fakes.lab_stack import LabStack
from tests.fakes.slack_api import FakeSlackApi


def private_answers(slack_api: FakeSlackApi, response: Any) -> list[str]:
    """Everything answered to the caller only: the ack's own text, response_url posts, ephemerals."""
    answers: list[str] = []
    body = response.body
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {"text": body}
        assert parsed.get("response_type", "ephemeral") == "ephemeral", parsed
        answers.append(all_text(parsed))
    for call in slack_api.calls_to("response_url"):
        assert call.body.get("response_type") == "ephemeral", call.body
        answers.append(all_text(call.body))
    for call in slack_api.calls_to("chat.postEphemeral"):
        answers.append(all_text(call.body))
    return answers


def assert_nothing_ran(stack: LabStack) -> None:
    assert stack.lab_requests() == 0, "a lab server was contacted"
    assert all(not names for names in stack.scripts.values())
    assert outgoing_public(stack.slack_api) == [], "something was posted in the channel"


MALFORMED = [
    ("check", "usage"),
    ("check   ", "usage"),
    ("fix", "usage"),
    ("history", "usage"),
    ("history vpn-iis abc", "number"),
    ("history vpn-iis 0", "number"),
    ("history vpn-iis -5", "number"),
    ("history vpn-iis 5 6", "usage"),
    ("frobnicate vpn-iis", "unknown"),
    ("check vpn-iis;Restart-Computer", "not a valid server name"),
    ("check vpn01|calc.exe", "not a valid server name"),
    ("check $(Stop-Service RemoteAccess)", "not a valid server name"),
    ("check `whoami`", "not a valid server name"),
    ("check vpn-iis&&rm", "not a valid server name"),
    ("check 'vpn-iis'", "not a valid server name"),
    ("check vpn-iis\"", "not a valid server name"),
    ("check ../../etc/passwd", "not a valid server name"),
    ("check @{a=1}", "not a valid server name"),
    ("check <@U0OPER001>", "mention"),
    ("check <https://evil.example|vpn-iis>", "link"),
    ("check " + "a" * 65, "not a valid server name"),
    ("check vpn-iis\x07", "control"),
    ("check group:", "group"),
    ("check group:e;ls", "group"),
    ("check all vpn-iis", "cannot be combined"),
    ("servers now", "no arguments"),
    ("check " + " ".join(f"vpn{i:02d}" for i in range(51)), "at most"),
    ("status please", "no arguments"),
]


@pytest.mark.parametrize(("text", "expected"), MALFORMED, ids=[repr(t)[:40] for t, _ in MALFORMED])
def test_malformed_command_gets_a_private_usage_answer_and_nothing_connects(stack: LabStack, slack_api: FakeSlackApi, text: str, expected: str) -> None:
    response = stack.harness.command(text, user=OPERATOR)
    assert response.status == 200
    answers = private_answers(slack_api, response)
    assert len(answers) == 1, answers
    assert expected.lower() in answers[0].lower(), answers[0]
    assert "/sstp" in answers[0] or expected in ("number", "not a valid server name", "group", "control", "no arguments", "cannot be combined")
    assert_nothing_ran(stack)


@pytest.mark.parametrize("text", ["check nosuchserver", "fix nosuchserver", "check vpn-iis nosuchserver", "history nosuchserver",
                                  "check group:nosuchgroup", "check NOSUCH-SERVER-01"])
def test_unknown_server_or_group_is_refused_privately_and_nothing_connects(stack: LabStack, slack_api: FakeSlackApi, text: str) -> None:
    response = stack.harness.command(text, user=OPERATOR)
    answers = private_answers(slack_api, response)
    assert len(answers) == 1, answers
    assert "nosuch" in answers[0].lower() or "unknown" in answers[0].lower()
    assert_nothing_ran(stack)


def test_unknown_server_refusal_is_audited(stack: LabStack) -> None:
    stack.harness.command("check nosuchserver", user=OPERATOR)
    rows = [r for r in audit_rows(stack) if r["actor"] == OPERATOR]
    assert rows and rows[-1]["outcome"].startswith("refused"), rows


def test_shell_metacharacters_are_not_echoed_back_as_markup(stack: LabStack, slack_api: FakeSlackApi) -> None:
    response = stack.harness.command("check *bold*_x_`y`", user=OPERATOR)
    (answer,) = private_answers(slack_api, response)
    assert "*bold*" not in answer and "`y`" not in answer
    assert_nothing_ran(stack)


def test_bare_sstp_answers_help_privately(stack: LabStack, slack_api: FakeSlackApi) -> None:
    response = stack.harness.command("", user=OPERATOR)
    (answer,) = private_answers(slack_api, response)
    assert "/sstp check" in answer
    assert_nothing_ran(stack)


@pytest.mark.parametrize("text", [f"check {IIS}", f"CHECK {IIS.upper()}", f"  Check   {IIS}   ", f"fix {IIS}", f"FIX {IIS.title()}",
                                  f"check {IIS} {IIS.upper()}"])
def test_check_forms_post_checking_then_update_the_same_message_with_the_report(stack: LabStack, slack_api: FakeSlackApi, text: str) -> None:
    response = stack.harness.command(text, user=OPERATOR)
    assert response.status == 200
    posts = slack_api.calls_to("chat.postMessage")
    top = [p for p in posts if not p.body.get("thread_ts")]
    assert len(top) == 1, [all_text(p.body)[:80] for p in top]
    first = top[0].body
    assert first["channel"] == CHANNEL
    assert "Checking" in all_text(first) and IIS in all_text(first)
    ts = stack.service.get_plan(stack.plan_from_last_report()[0]).message_ts
    updates = stack.updates_of(ts)
    assert updates, "the 'Checking' message was not updated"
    report = updates[-1]
    text_all = all_text(report)
    for finding in ("SSTP_HASH_MISMATCH", "IIS_HTTPS_BINDING"):
        assert finding in text_all
    assert [b["action_id"] for b in buttons(report)] == ["sstp_approve", "sstp_reject"]
    # one probe, exactly one server contacted
    assert stack.scripts[IIS] == ["probe"]
    assert stack.scripts[HEALTHY] == []


def test_report_has_status_line_then_one_section_per_finding_with_severity_title_evidence(stack: LabStack, slack_api: FakeSlackApi) -> None:
    stack.harness.command(f"check {IIS}")
    _plan_id, ts = stack.plan_from_last_report()
    report = stack.updates_of(ts)[-1]
    (check,) = [c for c in stack.service.status() if c.server == IIS]
    sections = [b["text"]["text"] for b in report["blocks"] if b["type"] == "section"]
    assert IIS in sections[0] and str(len(check.findings)) in sections[0]  # status line first
    for finding in check.findings:
        matching = [s for s in sections if finding["id"] in s and finding["title"][:60] in s.replace("&amp;", "&")]
        assert len(matching) == 1, finding["id"]
        section = matching[0]
        assert finding["severity"] in section or any(e in section for e in (":red_circle:", ":large_orange_circle:", ":large_blue_circle:"))
        assert any(str(k) in section for k in finding["evidence"]), "no evidence shown"


def test_healthy_server_report_has_no_buttons(stack: LabStack, slack_api: FakeSlackApi) -> None:
    stack.harness.command(f"check {HEALTHY}")
    final = slack_api.calls_to("chat.update")[-1].body
    assert "healthy" in all_text(final)
    assert buttons(final) == []
    assert stack.scripts[HEALTHY] == ["probe"]


def test_history_status_servers_are_private_and_contact_no_server(stack: LabStack, slack_api: FakeSlackApi) -> None:
    stack.harness.command(f"check {IIS}")
    stack.harness.command(f"check {IIS}")
    stack.harness.command(f"check {HEALTHY}")
    stack.lab.clear_logs()
    slack_api.reset()
    for text in (f"history {IIS}", f"history {IIS.upper()} 1", "status", "servers", "STATUS", "help"):
        slack_api.reset()
        response = stack.harness.command(text)
        answers = private_answers(slack_api, response)
        assert len(answers) == 1, (text, answers)
        assert outgoing_public(slack_api) == []
        if text == "servers":
            assert IIS in answers[0] and HEALTHY in answers[0]
        if text.lower() == "status":
            assert IIS in answers[0] and HEALTHY in answers[0]
    assert stack.lab_requests() == 0


def test_history_n_limits_the_entries(stack: LabStack, slack_api: FakeSlackApi) -> None:
    for _ in range(3):
        stack.harness.command(f"check {HEALTHY}")
    slack_api.reset()
    response = stack.harness.command(f"history {HEALTHY} 2")
    (answer,) = private_answers(slack_api, response)
    assert answer.count("check #") == 2, answer
    slack_api.reset()
    response = stack.harness.command(f"history {HEALTHY}")
    (answer,) = private_answers(slack_api, response)
    assert answer.count("check #") == 3, answer


def test_help_shows_only_what_the_caller_may_do(lab, tmp_path, slack_api: FakeSlackApi) -> None:  # type: ignore[no-untyped-def]
    stack = build_stack(lab, tmp_path, slack_api, operators=(OPERATOR,), approvers=(APPROVER,))
    try:
        helps = {}
        for user in (OPERATOR, APPROVER, OUTSIDER):
            slack_api.reset()
            response = stack.harness.command("help", user=user)
            (helps[user],) = private_answers(slack_api, response)
        assert "/sstp check" in helps[OPERATOR] and "/sstp history" in helps[OPERATOR]
        assert "approve or reject" not in helps[OPERATOR].lower()
        # the approver is not an operator here: no check commands, but may approve
        assert "/sstp check" not in helps[APPROVER]
        assert "approve" in helps[APPROVER].lower()
        assert "/sstp check" not in helps[OUTSIDER] and "/sstp fix" not in helps[OUTSIDER]
        assert len({helps[OPERATOR], helps[APPROVER], helps[OUTSIDER]}) == 3
        assert_nothing_ran(stack)
    finally:
        stack.close()


def test_non_operator_check_is_refused_privately_audited_and_nothing_connects(lab, tmp_path, slack_api: FakeSlackApi) -> None:  # type: ignore[no-untyped-def]
    stack = build_stack(lab, tmp_path, slack_api, operators=(OPERATOR,))
    try:
        for text in (f"check {IIS}", "check all", f"fix {IIS}", f"history {IIS}", "status", "servers"):
            slack_api.reset()
            response = stack.harness.command(text, user=OUTSIDER)
            (answer,) = private_answers(slack_api, response)
            assert "not" in answer.lower() and "operator" in answer.lower(), answer
            assert_nothing_ran(stack)
        rows = [r for r in audit_rows(stack) if r["actor"] == OUTSIDER]
        assert len(rows) == 6
        assert all(r["outcome"].startswith("refused") and r["at"] and r["action"] for r in rows)
    finally:
        stack.close()


def test_operators_given_as_a_user_group(lab, tmp_path, slack_api: FakeSlackApi) -> None:  # type: ignore[no-untyped-def]
    from tests.contract_slack.conftest import GROUP_MEMBER, OPERATOR_GROUP

    slack_api.usergroups[OPERATOR_GROUP] = [GROUP_MEMBER]
    stack = build_stack(lab, tmp_path, slack_api, operators=(OPERATOR_GROUP,))
    try:
        response = stack.harness.command(f"check {HEALTHY}", user=OPERATOR)  # not in the group
        assert "operator" in private_answers(slack_api, response)[0].lower()
        assert_nothing_ran(stack)
        lookups = slack_api.calls_to("usergroups.users.list")
        assert lookups and lookups[0].body.get("usergroup") == OPERATOR_GROUP
        slack_api.reset()
        stack.harness.command(f"check {HEALTHY}", user=GROUP_MEMBER)
        assert stack.scripts[HEALTHY] == ["probe"]
        slack_api.reset()
        response = stack.harness.command("help", user=GROUP_MEMBER)
        assert "/sstp check" in private_answers(slack_api, response)[0]
    finally:
        stack.close()


def test_allowed_channels_refuse_commands_elsewhere_privately_and_audited(lab, tmp_path, slack_api: FakeSlackApi) -> None:  # type: ignore[no-untyped-def]
    from tests.contract_slack.conftest import OTHER_CHANNEL

    stack = build_stack(lab, tmp_path, slack_api, allowed_channels=(CHANNEL,))
    try:
        response = stack.harness.command(f"check {IIS}", user=OPERATOR, channel=OTHER_CHANNEL)
        (answer,) = private_answers(slack_api, response)
        assert "channel" in answer.lower()
        assert_nothing_ran(stack)
        rows = [r for r in audit_rows(stack) if r["actor"] == OPERATOR]
        assert rows and rows[-1]["outcome"].startswith("refused")
        slack_api.reset()
        stack.harness.command(f"check {HEALTHY}", user=OPERATOR, channel=CHANNEL)
        assert stack.scripts[HEALTHY] == ["probe"]
    finally:
        stack.close()


def test_bot_not_in_channel_tells_the_caller_and_probes_nothing(stack: LabStack, slack_api: FakeSlackApi) -> None:
    slack_api.channels_without_bot.add(CHANNEL)
    response = stack.harness.command(f"check {IIS}")
    answers = [a for a in private_answers(slack_api, response)]
    assert answers and "invite" in answers[-1].lower()
    assert stack.lab_requests() == 0


def test_approver_help_mentions_the_two_person_rule(stack: LabStack, slack_api: FakeSlackApi) -> None:
    response = stack.harness.command("help", user=APPROVER)
    (answer,) = private_answers(slack_api, response)
    assert "two-person" in answer.lower()


def test_refused_check_audit_says_what_was_attempted(lab, tmp_path, slack_api: FakeSlackApi) -> None:  # type: ignore[no-untyped-def]
    stack = build_stack(lab, tmp_path, slack_api, operators=(OPERATOR,))
    try:
        stack.harness.command(f"check {IIS}", user=OUTSIDER)
        (row,) = [r for r in audit_rows(stack) if r["actor"] == OUTSIDER]
        assert row["server"] == IIS or IIS in str(row["details"]), row
    finally:
        stack.close()


def test_unreachable_server_report_names_the_error_and_offers_no_buttons(tmp_path, slack_api: FakeSlackApi) -> None:  # type: ignore[no-untyped-def]
    from commands.lab import Lab

    with Lab(["iis-binding"], faults={IIS: ["refused"]}) as lab:
        stack = build_stack(lab, tmp_path, slack_api)
        try:
            stack.harness.command(f"check {IIS}")
            final = slack_api.calls_to("chat.update")[-1].body
            assert "unreachable" in all_text(final).lower()
            assert buttons(final) == []
        finally:
            stack.close()
