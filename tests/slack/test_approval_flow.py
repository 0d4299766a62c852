"""User flow: Approve / Reject on a report card, and every refusal."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from commands.model import CheckResult, Finding
from tests.fakes.blockkit import all_text, assert_slack_limits, buttons
from tests.fakes.slack_api import FakeSlackApi
from tests.slack.conftest import (
    APPROVER,
    CHANNEL,
    GROUP_APPROVER,
    OPERATOR,
    OUTSIDER,
    Harness,
    build_harness,
    make_config,
)
from tests.slack.fake_service import T0, FakeService, hash_mismatch, unreachable


@pytest.fixture
def card(harness: Harness, service: FakeService, slack_api: FakeSlackApi) -> tuple[int, str]:
    """A posted report with a PROPOSED plan; returns (plan id, card ts)."""
    service.results["vpn01"] = hash_mismatch()
    harness.command("check vpn01")
    plan = service.plans[1]
    assert plan.message_ts is not None
    slack_api.reset()
    return plan.id, plan.message_ts


def card_updates(slack_api: FakeSlackApi, ts: str) -> list[dict]:
    return [c.body for c in slack_api.calls_to("chat.update") if c.body["ts"] == ts and c.body["channel"] == CHANNEL]


def test_approve_updates_the_card_in_place_then_runs(harness: Harness, service: FakeService, slack_api: FakeSlackApi, card: tuple[int, str]) -> None:
    plan_id, ts = card
    response = harness.click(plan_id, user=APPROVER, message_ts=ts)  # on the plan's own card
    assert response.status == 200
    updates = card_updates(slack_api, ts)
    texts = [all_text(u) for u in updates]
    assert "Approved by <@U0APPR001>" in texts[0]
    assert any("Running step 1 of 2" in t for t in texts) and any("Running step 2 of 2" in t for t in texts)
    assert "Fix applied" in texts[-1] and "Re-check" in texts[-1]
    assert all(buttons(u) == [] for u in updates)
    for u in updates:
        assert_slack_limits(u)
    assert service.plans[plan_id].state == "SUCCEEDED"
    assert service.count("execute") == 1
    assert slack_api.calls_to("chat.postEphemeral") == []


def test_group_member_may_approve(harness: Harness, service: FakeService, slack_api: FakeSlackApi, card: tuple[int, str]) -> None:
    harness.click(card[0], user=GROUP_APPROVER)
    assert service.plans[card[0]].state == "SUCCEEDED"


def test_reject(harness: Harness, service: FakeService, slack_api: FakeSlackApi, card: tuple[int, str]) -> None:
    plan_id, ts = card
    harness.click(plan_id, approve=False, user=APPROVER)
    (update,) = card_updates(slack_api, ts)
    assert "Rejected by <@U0APPR001>" in all_text(update) and buttons(update) == []
    assert service.plans[plan_id].state == "REJECTED" and service.count("execute") == 0


def assert_refused(slack_api: FakeSlackApi, service: FakeService, user: str, expected: str) -> None:
    """Refused ephemerally, nothing ran, and the card is untouched."""
    (eph,) = slack_api.wait_for("chat.postEphemeral")
    assert eph.body["user"] == user and eph.body["channel"] == CHANNEL
    assert expected in eph.body["text"]
    assert slack_api.calls_to("chat.update") == [], "the card is untouched"
    assert service.count("execute") == 0


def test_non_approver_is_refused_ephemerally_and_audited(harness: Harness, service: FakeService, slack_api: FakeSlackApi, card: tuple[int, str]) -> None:
    harness.click(card[0], user=OUTSIDER)
    assert_refused(slack_api, service, OUTSIDER, "not an approver")
    assert service.plans[card[0]].state == "PROPOSED"
    assert service.audits[-1].actor == OUTSIDER and "refused" in service.audits[-1].outcome
    assert [a for n, a in service.calls if n == "approve"] == [(card[0], OUTSIDER, False)]


def test_non_approver_cannot_reject_either(harness: Harness, service: FakeService, slack_api: FakeSlackApi, card: tuple[int, str]) -> None:
    harness.click(card[0], approve=False, user=OUTSIDER)
    assert_refused(slack_api, service, OUTSIDER, "not an approver")
    assert service.plans[card[0]].state == "PROPOSED"


def test_own_request_under_two_person_rule(slack_api: FakeSlackApi) -> None:
    config = make_config()
    service = FakeService(config)
    service.results["vpn01"] = hash_mismatch()
    h = build_harness(service, config, slack_api)
    try:
        h.command("check vpn01", user=APPROVER)
        slack_api.reset()
        h.click(1, user=APPROVER)
        assert_refused(slack_api, service, APPROVER, "Two-person rule")
    finally:
        h.close()


def test_expired_plan(service: FakeService, harness: Harness, slack_api: FakeSlackApi, card: tuple[int, str]) -> None:
    plan_id, ts = card
    service.now = lambda: T0 + timedelta(minutes=16)
    harness.click(plan_id)
    (eph,) = slack_api.wait_for("chat.postEphemeral")
    assert eph.body["user"] == APPROVER and "expired" in eph.body["text"]
    assert service.plans[plan_id].state == "EXPIRED" and service.count("execute") == 0
    (expired,) = card_updates(slack_api, ts)  # the card says so and loses its buttons
    assert "This plan expired" in all_text(expired) and buttons(expired) == []


def test_superseded_plan(service: FakeService, harness: Harness, slack_api: FakeSlackApi, card: tuple[int, str]) -> None:
    plan_id, ts = card
    harness.command("check vpn01")  # a newer check replaces the plan, and its card loses the buttons
    (retired,) = card_updates(slack_api, ts)
    assert "A newer check replaced this plan" in all_text(retired) and buttons(retired) == []
    slack_api.reset()
    harness.click(plan_id)  # e.g. from a client that had not refreshed the card
    assert_refused(slack_api, service, APPROVER, "replaced by a newer check")


def test_a_check_that_could_not_reach_the_server_leaves_the_card_alone(
    service: FakeService, harness: Harness, slack_api: FakeSlackApi, card: tuple[int, str]
) -> None:
    plan_id, ts = card
    service.results["vpn01"] = unreachable("vpn01")
    harness.command("check vpn01")
    assert card_updates(slack_api, ts) == []
    assert service.plans[plan_id].state == "PROPOSED"


def test_already_handled(service: FakeService, harness: Harness, slack_api: FakeSlackApi, card: tuple[int, str]) -> None:
    harness.click(card[0], approve=False)
    slack_api.reset()
    harness.click(card[0])
    assert_refused(slack_api, service, APPROVER, "already rejected")


def test_state_changed_before_running(service: FakeService, harness: Harness, slack_api: FakeSlackApi, card: tuple[int, str]) -> None:
    plan_id, ts = card
    service.state_changed.add(plan_id)
    harness.click(plan_id)
    final = card_updates(slack_api, ts)[-1]
    assert "Nothing done" in all_text(final) and "nothing was touched" in all_text(final)
    (eph,) = slack_api.calls_to("chat.postEphemeral")
    assert "server changed" in eph.body["text"]
    assert service.plans[plan_id].state == "FAILED"


def test_bad_button_value_is_refused(harness: Harness, service: FakeService, slack_api: FakeSlackApi, card: tuple[int, str]) -> None:
    harness.click("1; DROP TABLE plans")
    assert "not valid" in slack_api.wait_for("chat.postEphemeral")[0].body["text"]
    assert service.count("approve") == 0
    slack_api.reset()
    harness.click(999)
    assert "not valid" in slack_api.wait_for("chat.postEphemeral")[0].body["text"]


def test_click_in_a_channel_not_allowed(slack_api: FakeSlackApi) -> None:
    config = make_config(allowed_channels=("C0OTHER01",))
    service = FakeService(config)
    service.results["vpn01"] = hash_mismatch()
    h = build_harness(service, config, slack_api)
    try:
        service.check([config.server("vpn01")], type("A", (), {"id": OPERATOR, "source": "slack"})())
        h.click(1)
        assert "not enabled" in slack_api.wait_for("chat.postEphemeral")[0].body["text"]
        assert service.count("approve") == 0
        last = service.audits[-1]
        assert (last.action, last.outcome, last.plan_id) == ("approve", "refused: channel not allowed", 1)
        assert last.details == {"channel": CHANNEL, "source": "slack"}
    finally:
        h.close()


def test_twenty_concurrent_approvals_run_the_plan_once(service: FakeService, harness: Harness, slack_api: FakeSlackApi, card: tuple[int, str]) -> None:
    service.step_delay = 0.05
    barrier = threading.Barrier(20)

    def click() -> None:
        barrier.wait()
        harness.click(card[0], wait=False)

    threads = [threading.Thread(target=click) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    harness.drain()
    assert service.count("approve") == 20
    assert service.count("execute") == 1
    assert service.plans[card[0]].state == "SUCCEEDED"
    ephemerals = slack_api.calls_to("chat.postEphemeral")
    assert len(ephemerals) == 19 and all("already" in e.body["text"] for e in ephemerals)


def test_rate_limited_update_is_retried_after_retry_after(service: FakeService, harness: Harness, slack_api: FakeSlackApi, card: tuple[int, str]) -> None:
    plan_id, _ts = card
    slack_api.rate_limit("chat.update", retry_after=1, times=1)
    started = time.monotonic()
    harness.click(plan_id, approve=False)
    calls = slack_api.calls_to("chat.update")
    assert len(calls) == 2 and calls[0].body == calls[1].body
    assert calls[1].at - calls[0].at >= 0.95
    assert time.monotonic() - started >= 1.0
    assert service.plans[plan_id].state == "REJECTED"


def test_remote_error_during_the_fix_is_shown_on_the_card(service: FakeService, harness: Harness, slack_api: FakeSlackApi, card: tuple[int, str]) -> None:
    from commands.errors import RemoteError

    def broken(plan_id, actor, *, progress=None, waiting=None):  # type: ignore[no-untyped-def]
        raise RemoteError("unreachable", "vpn01", "vpn01:5986 refused the connection")

    service.execute = broken  # type: ignore[method-assign]
    harness.click(card[0])
    final = card_updates(slack_api, card[1])[-1]
    assert "Fix failed" in all_text(final) and "refused the connection" in all_text(final)


def test_progress_shows_each_step_counted_from_one(service: FakeService, harness: Harness, slack_api: FakeSlackApi, card: tuple[int, str]) -> None:
    harness.click(card[0])
    texts = [all_text(u) for u in card_updates(slack_api, card[1])]
    running = [t for t in texts if "Running step" in t]
    assert [("Running step 1 of 2" in t, "Running step 2 of 2" in t) for t in running] == [(True, False), (False, True)]


def test_state_changed_worded_as_the_service_does(service: FakeService, harness: Harness, slack_api: FakeSlackApi, card: tuple[int, str]) -> None:
    real = service.execute

    def drifted(plan_id, actor, *, progress=None, waiting=None):  # type: ignore[no-untyped-def]
        service.state_changed.add(plan_id)
        outcome = real(plan_id, actor, progress=progress, waiting=waiting)
        outcome.error = "The server changed since the plan was made; nothing was touched. Run the check again."
        return outcome

    service.execute = drifted  # type: ignore[method-assign]
    harness.click(card[0])
    assert "Nothing done" in all_text(card_updates(slack_api, card[1])[-1])
    assert "server changed" in slack_api.wait_for("chat.postEphemeral")[0].body["text"]


def test_a_fleet_check_retires_the_cards_it_replaces(
    service: FakeService, harness: Harness, slack_api: FakeSlackApi, card: tuple[int, str]
) -> None:
    plan_id, ts = card
    harness.command("check all")
    (retired,) = card_updates(slack_api, ts)
    assert "A newer check replaced this plan" in all_text(retired) and buttons(retired) == []
    assert service.plans[plan_id].state == "SUPERSEDED"
    newer = [p for p in service.plans.values() if p.server == "vpn01" and p.state == "PROPOSED"]
    assert len(newer) == 1 and newer[0].message_ts not in (None, ts)  # the new plan has its own card


def test_a_plan_waiting_for_another_process_says_so_on_its_card(
    service: FakeService, harness: Harness, slack_api: FakeSlackApi, card: tuple[int, str]
) -> None:
    plan_id, ts = card
    service.waits_for = 99
    harness.click(plan_id)
    texts = [all_text(u) for u in card_updates(slack_api, ts)]
    waiting = [t for t in texts if "Waiting for plan #99" in t]
    assert len(waiting) == 1 and "another sstp-bot process is running on *vpn01*" in waiting[0]
    assert texts.index(waiting[0]) < next(i for i, t in enumerate(texts) if "Running step 1" in t)
    assert "Fix applied" in texts[-1]


def test_a_fix_that_leaves_a_warning_no_plan_can_fix_says_so(
    service: FakeService, harness: Harness, slack_api: FakeSlackApi, card: tuple[int, str]
) -> None:
    plan_id, ts = card
    expiring = Finding("SSTP_CERT_EXPIRING", "warning", "The SSTP certificate expires in 12 days", "Renew it.",
                       evidence={"days_left": 12})
    service.after_fix["vpn01"] = CheckResult("vpn01", T0, findings=[expiring], plan=None, vpn_connections=0)
    harness.click(plan_id)
    final = all_text(card_updates(slack_api, ts)[-1])
    assert service.plans[plan_id].state == "SUCCEEDED"  # the plan's findings are gone
    assert "Fix applied.* The re-check still reports 1 finding that needs a person" in final
    assert "SSTP_CERT_EXPIRING" in final
