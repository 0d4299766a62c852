"""`/metrics` beside `/healthz` (DESIGN 13 [2]): HTTP mode on its port, Socket Mode on `[service] health_port`."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from slack_bolt.request import BoltRequest

from bot.config import load_config
from bot.service import build_service
from bot.slack.app import create_app, make_web_client
from bot.slack.server import health_server, http_server
from commands.lab import Lab
from tests.fakes import payloads
from tests.fakes.harness import BOT_TOKEN, OPERATOR, SIGNING_SECRET
from tests.fakes.slack_api import FakeSlackApi


@pytest.fixture
def slack_api() -> Iterator[FakeSlackApi]:
    with FakeSlackApi() as api:
        yield api


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        body = response.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_metrics_after_a_check(tmp_path: Path, slack_api: FakeSlackApi) -> None:
    with Lab(["healthy", "iis-binding", "expired-with-renewal"]) as lab:
        config = load_config(lab.write_config(tmp_path / "lab.toml"), {})
        service = build_service(config, {}, lambda: datetime.now(UTC))
        app = create_app(service, config, client=make_web_client(BOT_TOKEN, slack_api.url), signing_secret=SIGNING_SECRET)
        server = http_server(app, service, "127.0.0.1", 0).start()
        health = health_server(app, service, "127.0.0.1", 0).start()  # what Socket Mode serves on health_port
        try:
            before = scrape(f"{server.url}/metrics")
            assert "sstp_bot_certificate_expiry_timestamp_seconds" not in before
            assert before["sstp_bot_fixes_total"][(("state", "SUCCEEDED"),)] == 0

            # One slash command through bolt (its ack is timed), then a fleet check.
            form = payloads.slash_command("help", user=OPERATOR)
            app.dispatch(BoltRequest(body=payloads.form_body(form), headers={"content-type": ["application/x-www-form-urlencoded"]}))
            app.sstp.drain(10)
            service.check(service.resolve_targets(all_servers=True), replace_actor())
            for url in (server.url, health.url):
                samples = scrape(f"{url}/metrics")
                checks = samples["sstp_bot_checks_total"]
                assert checks[(("status", "healthy"),)] == 1 and checks[(("status", "unhealthy"),)] == 2
                healthy = samples["sstp_bot_server_healthy"]
                assert healthy == {(("server", "vpn-healthy"),): 1.0, (("server", "vpn-iis"),): 0.0,
                                   (("server", "vpn-expired"),): 0.0}
                expiry = samples["sstp_bot_certificate_expiry_timestamp_seconds"]
                assert set(expiry) == {(("server", n),) for n in lab.servers}
                assert expiry[(("server", "vpn-expired"),)] < datetime.now(UTC).timestamp() < expiry[(("server", "vpn-healthy"),)]
                assert samples["sstp_bot_server_open_findings"][(("server", "vpn-iis"),)] >= 2
                assert samples["sstp_bot_slack_ack_seconds_count"][()] == 1
            with urllib.request.urlopen(f"{health.url}/healthz", timeout=10) as response:
                assert response.status == 200
        finally:
            health.stop()
            server.stop()
            app.sstp.close()
            service.close()


def replace_actor() -> object:
    from bot.service import Actor

    return replace(Actor(id="cli:test", source="cli"))
