"""The weekly certificate digest (DESIGN 8, 13 [2]): the expiry chart through files v2, with the list
of certificates expiring within `cert_expiry_warning_days`, once per week whatever the processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import ScheduleConfig, load_config
from bot.operations import PeriodicJobs, sweep
from bot.service import build_service
from bot.slack.alerts import SweepAlerts
from bot.slack.app import make_web_client
from commands.lab import Lab
from tests.fakes.harness import BOT_TOKEN
from tests.fakes.slack_api import FakeSlackApi

ALERTS = "C0ALERTS1"
MONDAY_9 = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


@pytest.fixture
def slack_api() -> Iterator[FakeSlackApi]:
    with FakeSlackApi() as api:
        yield api


@pytest.mark.slow
def test_weekly_digest_uploads_the_chart(tmp_path: Path, slack_api: FakeSlackApi) -> None:
    pytest.importorskip("matplotlib")
    with Lab(["healthy", "expired-with-renewal"]) as lab:
        config = load_config(lab.write_config(tmp_path / "lab.toml"), {})
        config = replace(config, schedule=ScheduleConfig(alert_channel=ALERTS, digest_weekday="monday", digest_hour_utc=9))
        service = build_service(config, {}, lambda: datetime.now(UTC))
        alerts = SweepAlerts(make_web_client(BOT_TOKEN, slack_api.url), service, ALERTS)
        jobs = PeriodicJobs(service, on_digest=alerts.publish_digest, holder="test-bot")
        try:
            sweep(service)
            assert jobs.run_due(MONDAY_9 - timedelta(hours=1)) == []  # before digest_hour_utc
            assert jobs.run_due(MONDAY_9 + timedelta(days=1)) == []  # Tuesday
            assert jobs.run_due(MONDAY_9) == ["digest"]
            assert jobs.run_due(MONDAY_9 + timedelta(hours=2)) == []  # once a week

            (ask,) = slack_api.calls_to("files.getUploadURLExternal")
            (upload,) = slack_api.calls_to("file_upload")
            (complete,) = slack_api.calls_to("files.completeUploadExternal")
            png = slack_api.uploads[upload.body["file_id"]]
            assert png.startswith(b"\x89PNG") and int(ask.body["length"]) == len(png)
            assert complete.body["channel_id"] == ALERTS
            files = complete.body["files"]
            files = json.loads(files) if isinstance(files, str) else files
            assert files[0]["id"] == upload.body["file_id"]
            comment = complete.body["initial_comment"]
            assert "vpn-expired" in comment and "renewal is in the store" in comment
            assert "vpn-healthy" not in comment  # its certificate is far from its warning period

            assert jobs.run_due(MONDAY_9 + timedelta(days=7)) == ["digest"]
            assert len(slack_api.calls_to("files.completeUploadExternal")) == 2
        finally:
            service.close()
