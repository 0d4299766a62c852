"""Scheduled sweeps in `serve` through the lab and the loopback Slack (DESIGN 8, 13 [2]).

Two sweeps with no change post nothing; a server broken between sweeps is posted once, with its plan
and buttons, which an approver can click even after later sweeps; a fixed one is posted as recovered.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import ScheduleConfig, load_config
from bot.operations import PeriodicJobs
from bot.service import build_service
from bot.slack.alerts import SweepAlerts
from commands.lab import Lab
from tests.fakes.blockkit import all_text, assert_slack_limits, buttons
from tests.fakes.harness import APPROVER, build_harness
from tests.fakes.slack_api import FakeSlackApi
from tests.operations.conftest import set_remoteaccess

ALERTS = "C0ALERTS1"
T0 = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)  # a Tuesday: no digest due


@pytest.fixture
def slack_api() -> Iterator[FakeSlackApi]:
    with FakeSlackApi() as api:
        yield api


def posts(api: FakeSlackApi) -> list[dict[str, object]]:
    return [c.body for c in api.calls_to("chat.postMessage") if c.body.get("channel") == ALERTS and not c.body.get("thread_ts")]


@pytest.mark.slow
def test_sweeps_post_only_changes_with_plan_buttons(tmp_path: Path, slack_api: FakeSlackApi) -> None:
    with Lab(["healthy", "iis-binding"]) as lab:
        config = load_config(lab.write_config(tmp_path / "lab.toml"), {})
        config = replace(config, schedule=ScheduleConfig(sweep_every_minutes=5, alert_channel=ALERTS),
                         slack=replace(config.slack, approvers=(APPROVER,)))
        service = build_service(config, {}, lambda: datetime.now(UTC))
        harness = build_harness(service, config, slack_api)
        alerts = SweepAlerts(harness.app.client, service, ALERTS)
        jobs = PeriodicJobs(service, on_sweep=alerts.publish_sweep, holder="test-bot")
        try:
            # First sweep: the unhealthy server's first check is an alert, the healthy one's is not.
            assert jobs.run_due(T0) == ["sweep"]
            first = posts(slack_api)
            assert len(first) == 1 and "vpn-iis" in all_text(first[0]) and buttons(first[0])
            assert jobs.run_due(T0 + timedelta(minutes=1)) == []  # same slot: not run again

            # Two sweeps with no change post nothing.
            assert jobs.run_due(T0 + timedelta(minutes=5)) == ["sweep"]
            assert jobs.run_due(T0 + timedelta(minutes=10)) == ["sweep"]
            assert len(posts(slack_api)) == 1

            # Broken between sweeps: posted once, as a full report with its plan and buttons.
            set_remoteaccess(lab, "vpn-healthy", "Stopped")
            jobs.run_due(T0 + timedelta(minutes=15))
            alert = posts(slack_api)[1:]
            assert len(alert) == 1
            body = alert[0]
            text = all_text(body)
            assert "vpn-healthy" in text and "REMOTEACCESS_STOPPED" not in str(body.get("text"))
            found = buttons(body)
            assert [b["action_id"] for b in found] == ["sstp_approve", "sstp_reject"]
            assert_slack_limits(body)
            jobs.run_due(T0 + timedelta(minutes=20))  # still broken: nothing new is posted...
            assert len(posts(slack_api)) == 2
            # ...but the card now carries the newest sweep's plan, so its Approve button still works.
            latest = {r.server: r for r in service.status()}["vpn-healthy"]
            assert latest.plan_id is not None and latest.plan_id != int(found[0]["value"])
            plan = service.get_plan(latest.plan_id)
            assert plan.channel == ALERTS and plan.message_ts is not None
            card = slack_api.messages[(ALERTS, plan.message_ts)]
            assert buttons(card)[0]["value"] == str(latest.plan_id)

            harness.click(latest.plan_id, approve=True, user=APPROVER, channel=ALERTS, message_ts=plan.message_ts)
            assert service.get_plan(latest.plan_id).state == "SUCCEEDED"

            # Fixed through the card: the card says so, and the fix's re-check is the server's
            # previous check, so the next sweep has nothing new to say.
            jobs.run_due(T0 + timedelta(minutes=25))
            assert len(posts(slack_api)) == 2

            # Broken again, then fixed by hand: posted once, then posted as recovered, a short line.
            set_remoteaccess(lab, "vpn-healthy", "Stopped")
            jobs.run_due(T0 + timedelta(minutes=30))
            assert len(posts(slack_api)) == 3
            set_remoteaccess(lab, "vpn-healthy", "Running")
            jobs.run_due(T0 + timedelta(minutes=35))
            recovered = posts(slack_api)[3:]
            assert len(recovered) == 1
            assert "vpn-healthy" in all_text(recovered[0]) and "recovered" in all_text(recovered[0])
            assert "REMOTEACCESS_STOPPED" in all_text(recovered[0])
            assert not buttons(recovered[0])
            jobs.run_due(T0 + timedelta(minutes=40))
            assert len(posts(slack_api)) == 4
        finally:
            harness.close()
            service.close()


@pytest.mark.parametrize("alert_channel", ["", ALERTS])
def test_a_scheduled_sweep_takes_the_buttons_off_the_cards_it_superseded(
        tmp_path: Path, slack_api: FakeSlackApi, alert_channel: str) -> None:
    """DESIGN 6: a newer check supersedes older proposals, whoever ran it. A `/sstp check` card whose
    plan a scheduled sweep replaced loses its buttons, with or without an alert channel (where
    nothing is posted for a server that did not change)."""
    from bot.slack.alerts import sweep_publisher
    from tests.fakes.harness import CHANNEL

    with Lab(["iis-binding"]) as lab:
        config = load_config(lab.write_config(tmp_path / "lab.toml"), {})
        config = replace(config, schedule=ScheduleConfig(sweep_every_minutes=5, alert_channel=alert_channel),
                         slack=replace(config.slack, approvers=(APPROVER,)))
        service = build_service(config, {}, lambda: datetime.now(UTC))
        harness = build_harness(service, config, slack_api)
        alerts = SweepAlerts(harness.app.client, service, alert_channel) if alert_channel else None
        jobs = PeriodicJobs(service, on_sweep=sweep_publisher(harness.app.client, alerts), holder="test-bot")
        try:
            if alert_channel:
                jobs.run_due(T0)  # the server's first check: an alert card in the alert channel
                assert len(posts(slack_api)) == 1
            harness.command("check vpn-iis")
            slash_plan = {r.server: r for r in service.status()}["vpn-iis"].plan_id
            assert slash_plan is not None
            card_ts = service.get_plan(slash_plan).message_ts
            assert card_ts is not None and buttons(slack_api.messages[(CHANNEL, card_ts)])

            jobs.run_due(T0 + timedelta(minutes=5))  # nothing changed since the slash check

            assert service.get_plan(slash_plan).state == "SUPERSEDED"
            card = slack_api.messages[(CHANNEL, card_ts)]
            assert not buttons(card) and "replaced" in all_text(card).lower()
            assert len(posts(slack_api)) == (1 if alert_channel else 0)  # no change: nothing new posted
        finally:
            harness.close()
            service.close()
