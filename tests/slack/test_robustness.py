"""What the user sees when Slack or the database misbehaves, and what server text cannot do in Slack."""

from __future__ import annotations

import json

from bot.slack import blocks, messages
from tests.fakes.blockkit import all_text, assert_slack_limits, buttons
from tests.fakes.slack_api import FakeSlackApi
from tests.slack.conftest import Harness
from tests.slack.fake_service import FakeService, hash_mismatch


def test_a_report_the_card_cannot_take_is_posted_in_its_thread_with_the_buttons(
    harness: Harness, service: FakeService, slack_api: FakeSlackApi
) -> None:
    service.results["vpn01"] = hash_mismatch()
    slack_api.fail("chat.update", "msg_too_long", times=1)
    harness.command("check vpn01")
    report = slack_api.wait_for("chat.postMessage", where=lambda c: bool(buttons(c.body)))[0]
    assert harness.app.sstp.drain(10)
    card_ts = slack_api.calls_to("chat.update")[0].body["ts"]  # the edit that Slack refused
    assert report.body["thread_ts"] == card_ts
    assert_slack_limits(report.body)
    plan = service.plans[1]
    assert plan.message_ts not in (None, card_ts)  # later updates go to the message with the buttons


def test_a_database_failure_during_a_command_is_answered(harness: Harness, service: FakeService, slack_api: FakeSlackApi) -> None:
    service.status_error = RuntimeError("database is locked")
    harness.command("status")
    reply = slack_api.wait_for("response_url")[0]
    assert messages.INTERNAL_ERROR in all_text(reply.body)


def test_server_text_in_evidence_threads_is_inert() -> None:
    nasty = "site```<!channel> <https://evil.example|click> & more"
    [reply] = blocks._code_replies("Evidence", json.dumps({"site": nasty}))
    text = all_text(reply.payload())
    assert "<!channel>" not in text and "<https://evil" not in text
    assert text.count("```") == 2  # the block is opened and closed once: the value cannot close it


def test_help_is_not_queued_behind_slow_checks(harness: Harness, service: FakeService, slack_api: FakeSlackApi) -> None:
    import threading
    import time

    gate = service.check_gate = threading.Event()  # the checks last until the test opens the gate
    try:
        for n in range(10):  # fleet checks of two servers by ten people: joined to one check per server
            harness.command(f"check vpn0{1 + n % 3} vpn0{1 + (n + 1) % 3}", user=f"U0OPER{n:03d}", wait=False)
        deadline = time.monotonic() + 10
        while service.count("check") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        # (vpn01, vpn02) by the first, vpn03 by the second: every later request joined those checks
        assert service.count("check") == 2
        started = time.monotonic()
        harness.command("help", wait=False)
        slack_api.wait_for("response_url", where=lambda c: "/sstp check" in all_text(c.body), timeout=10)
        assert time.monotonic() - started < 2.0
        assert not gate.is_set() and service.count("check") == 2  # answered while every check still ran
    finally:
        gate.set()
