from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from bot.slack import blocks
from bot.slack.blocks import APPROVE_ACTION, REJECT_ACTION, FleetLine
from commands.model import CheckResult, Finding, Plan, Step
from tests.fakes.blockkit import all_text, assert_slack_limits, buttons
from tests.slack.fake_service import T0, hash_mismatch, healthy, unreachable


def payload(message: blocks.SlackMessage) -> dict:
    p = message.payload()
    assert_slack_limits(p)
    return p


def test_report_with_plan_has_buttons_carrying_only_the_plan_id() -> None:
    p = payload(blocks.report(hash_mismatch(), plan_id=42, expires_at=T0))
    approve, reject = buttons(p)
    assert approve["action_id"] == APPROVE_ACTION and approve["value"] == "42" and approve["style"] == "primary"
    assert reject["action_id"] == REJECT_ACTION and reject["value"] == "42" and reject["style"] == "danger"
    assert "confirm" not in reject
    text = all_text(p)
    assert "SSTP_HASH_MISMATCH" in text and "0.0.0.0:443" in text
    assert "*3* VPN users are connected" in text
    # The expiry in each reader's time zone, with the UTC time for clients that cannot format it.
    assert f"Plan #42, expires <!date^{int(T0.timestamp())}^{{date_short_pretty}} at {{time}}|2026-11-25T12:00:00Z>" in text


def test_confirm_dialog_lists_the_steps_and_flags_disruptive() -> None:
    p = payload(blocks.report(hash_mismatch(), plan_id=7))
    confirm = buttons(p)[0]["confirm"]
    assert "1. Bind the SSTP certificate" in confirm["text"]["text"]
    assert "2. Restart the RemoteAccess service (disruptive)" in confirm["text"]["text"]
    assert confirm["style"] == "danger"
    steps_text = all_text(p)
    assert "`restart_remoteaccess` :warning: disruptive" in steps_text
    assert "`bind_sstp_certificate`" in steps_text and "`bind_sstp_certificate` :warning:" not in steps_text


def test_confirm_text_is_cut_at_300_characters() -> None:
    many = [Step(f"step_{i}", {}, "A rather long description of a remediation step " * 2, disruptive=i % 2 == 0) for i in range(20)]
    result = replace(hash_mismatch(), plan=Plan(steps=tuple(many), fingerprint="f" * 64))
    confirm = buttons(payload(blocks.report(result, plan_id=1)))[0]["confirm"]
    text = confirm["text"]["text"]
    assert len(text) <= 300 and "…" in text
    assert text.endswith("Drops the 3 connected VPN users.")  # the cost is never the part cut off


def test_confirm_says_what_the_disruptive_steps_cost() -> None:
    def confirm_of(result: CheckResult) -> str:
        return str(buttons(payload(blocks.report(result, plan_id=1)))[0]["confirm"]["text"]["text"])

    assert confirm_of(hash_mismatch(vpn_connections=12)).endswith("Drops the 12 connected VPN users.")
    assert confirm_of(hash_mismatch(vpn_connections=0)).endswith("No VPN users are connected right now.")
    assert "VPN user" not in confirm_of(hash_mismatch(steps=1))  # binding alone is not disruptive here


def test_long_lists_say_how_many_rows_are_not_shown() -> None:
    inventory = [SimpleNamespace(name=f"vpn{n:04}", host=f"vpn{n:04}.corp.example.com", port=5986, group="emea",
                                 public_name="vpn.example.com") for n in range(3000)]
    message = payload(blocks.servers(inventory))
    text = all_text(message)
    shown = text.count("*vpn")
    assert 0 < shown < 3000 and f"… and {3000 - shown} more not shown here." in text
    assert len(message["blocks"]) <= 50
    assert "more not shown" not in all_text(payload(blocks.servers(inventory[:3])))


def test_status_lists_servers_never_checked() -> None:
    text = all_text(payload(blocks.status([], ["vpn07", "vpn08"])))
    assert "*vpn07* never checked" in text and "*vpn08* never checked" in text


def test_no_buttons_without_a_plan_or_plan_id() -> None:
    assert buttons(payload(blocks.report(healthy("vpn02")))) == []
    assert buttons(payload(blocks.report(hash_mismatch(), plan_id=None))) == []


def test_healthy_and_error_reports() -> None:
    assert "healthy" in all_text(payload(blocks.report(healthy("vpn02"))))
    text = all_text(payload(blocks.report(unreachable("vpn03"))))
    assert "Server unreachable" in text and "`unreachable`" in text and "refused the connection" in text


def test_vpn_user_count_unknown_and_zero() -> None:
    assert "unknown" in all_text(payload(blocks.report(replace(hash_mismatch(), vpn_connections=None), plan_id=1)))
    assert "No VPN users" in all_text(payload(blocks.report(replace(hash_mismatch(), vpn_connections=0), plan_id=1)))


def test_long_evidence_is_cut_and_posted_in_the_thread() -> None:
    finding = Finding("PROBE_INCOMPLETE", "warning", "Probe incomplete", "x", evidence={"errors": ["e" * 400] * 30})
    message = blocks.report(CheckResult("vpn01", T0, findings=[finding]))
    p = payload(message)
    assert "full evidence in the thread" in all_text(p)
    assert message.thread, "the whole evidence goes to thread replies"
    joined = "".join(all_text(payload(reply)) for reply in message.thread)
    assert joined.count("e" * 400) == 30


def test_huge_finding_text_stays_under_3000() -> None:
    finding = Finding("PROBE_INCOMPLETE", "warning", "T" * 5000, "D" * 5000, evidence={"k": "v"})
    payload(blocks.report(CheckResult("vpn01", T0, findings=[finding])))


def test_many_findings_stay_under_50_blocks_rest_in_thread() -> None:
    findings = [Finding(f"F{i:03}", "critical", f"finding {i}", "detail", evidence={"n": i}) for i in range(120)]
    steps = tuple(Step(f"a{i}", {}, f"step {i} " + "d" * 200, disruptive=True) for i in range(60))
    message = blocks.report(CheckResult("vpn01", T0, findings=findings, plan=Plan(steps, "f" * 64), vpn_connections=1), plan_id=9)
    p = payload(message)
    assert len(p["blocks"]) <= 50
    assert buttons(p), "the buttons survive truncation"
    assert "more in the thread" in all_text(p)
    # 120 findings: 90 in the thread would be 90 messages; the thread stops at its bound and says where
    # the rest is (a server listing thousands of bindings must not make the bot post thousands).
    assert len(message.thread) == blocks.MAX_THREAD_REPLIES
    assert "finding 30" in all_text(payload(message.thread[0]))  # the first after the card's 30
    last = all_text(payload(message.thread[-1]))
    assert "not posted here" in last and "sstp-bot check vpn01" in last


def test_markup_from_servers_is_escaped() -> None:
    finding = Finding("X", "critical", "<!channel> pwned", "<@U1> & co", evidence={"<k>": "<https://x|y>"})
    text = all_text(payload(blocks.report(CheckResult("vpn01", T0, findings=[finding]))))
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text and "&amp; co" in text


def plan_record(state: str = "APPROVED") -> SimpleNamespace:
    return SimpleNamespace(
        id=5, server="vpn01", state=state,
        steps=[s.to_json() for s in hash_mismatch(steps=3).plan.steps],  # type: ignore[union-attr]
    )


def test_plan_card_running_step() -> None:
    p = payload(blocks.plan_card(plan_record("RUNNING"), ["Approved by <@U0APPR001>", "Running step 2 of 3"], current_step=2))
    text = all_text(p)
    assert ":white_check_mark: 1." in text and ":gear: 2." in text and ":white_small_square: 3." in text
    assert buttons(p) == []


def test_plan_card_final_with_recheck() -> None:
    outcome = SimpleNamespace(
        steps=[SimpleNamespace(action="bind_sstp_certificate", ok=True, changed=True, detail="bound"),
               SimpleNamespace(action="restart_remoteaccess", ok=False, changed=False, detail="timeout")],
        after=hash_mismatch(), state="FAILED", error="step 2 failed",
    )
    text = all_text(payload(blocks.plan_card(plan_record("FAILED"), ["x"], outcome=outcome)))
    assert "Re-check" in text and "SSTP_HASH_MISMATCH" in text and ":x: `restart_remoteaccess`" in text


@pytest.mark.parametrize("n", [1, 3, 200, 2000])
def test_fleet_summary_limits(n: int) -> None:
    lines = [FleetLine(f"vpn{i:04}", ["healthy", "unhealthy", "error", None][i % 4], i % 3, "timeout") for i in range(n)]
    p = payload(blocks.fleet_summary("all", lines))
    assert len(p["blocks"]) <= 50


def test_fleet_summary_final_counts() -> None:
    lines = [FleetLine("a", "healthy"), FleetLine("b", "unhealthy", 2), FleetLine("c", "error", error_kind="tls")]
    text = all_text(payload(blocks.fleet_summary("group:emea", lines)))
    assert "3 checked: 1 healthy, 1 with findings, 1 could not be checked" in text
    assert "c: tls" in text and "b: 2 findings" in text


def test_help_lists_only_what_the_caller_may_do() -> None:
    operator = all_text(payload(blocks.help_message(operator=True, approver=False, two_person_rule=True, channel_allowed=True)))
    assert "/sstp check" in operator and "not an approver" in operator
    approver = all_text(payload(blocks.help_message(operator=True, approver=True, two_person_rule=True, channel_allowed=True)))
    assert "approve or reject" in approver and "Two-person rule" in approver
    outsider = all_text(payload(blocks.help_message(operator=False, approver=False, two_person_rule=True, channel_allowed=True)))
    assert "/sstp check" not in outsider and "not allowed to run checks" in outsider
    elsewhere = all_text(payload(blocks.help_message(operator=True, approver=True, two_person_rule=True, channel_allowed=False)))
    assert "/sstp check" not in elsewhere


def test_history_status_servers_render() -> None:
    from tests.slack.conftest import make_config
    from tests.slack.fake_service import FakeService

    service = FakeService(make_config())
    service.results["vpn01"] = hash_mismatch()
    from bot.slack.ports import slack_actor

    service.check(list(service.config.servers.values()), slack_actor("U0OPER001"))
    assert "plan #1" in all_text(payload(blocks.history("vpn01", service.history("vpn01"))))
    assert "vpn03" in all_text(payload(blocks.status(service.status())))
    assert "group `emea`" in all_text(payload(blocks.servers(list(service.config.servers.values()))))
    assert "No history" in all_text(payload(blocks.history("vpn09", [])))


def test_confirm_falls_back_to_action_names_to_list_every_step() -> None:
    steps = tuple(Step(f"action_{i}", {}, "A long explanation of what this step does on the server " * 2, disruptive=i == 4) for i in range(5))
    result = replace(hash_mismatch(), plan=Plan(steps=steps, fingerprint="f" * 64))
    text = buttons(payload(blocks.report(result, plan_id=1)))[0]["confirm"]["text"]["text"]
    assert all(f"{i + 1}. action_{i}" in text for i in range(5)) and "action_4 (disruptive)" in text


def test_evidence_values_are_literal() -> None:
    finding = Finding("IIS_HTTPS_BINDING", "critical", "t", "d", evidence={"binding_information": "*:443:"})
    assert "`*:443:`" in all_text(payload(blocks.report(CheckResult("vpn01", T0, findings=[finding]))))
