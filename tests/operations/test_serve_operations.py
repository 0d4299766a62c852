"""`sstp-bot serve` runs the scheduled sweep and serves /healthz and /metrics on `[service] health_port`
in Socket Mode (DESIGN 13), against the lab, the fake Web API and a fake Socket Mode server."""

from __future__ import annotations

import argparse
import io
import socket
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.cli import Environment, serve
from bot.config import WEEKDAYS
from commands.lab import Lab
from tests.fakes.blockkit import all_text, buttons
from tests.fakes.harness import APP_TOKEN, BOT_TOKEN
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.socket_mode import FakeSocketModeServer

ALERTS = "C0ALERTS1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_sweeps_on_schedule_and_serves_metrics(tmp_path: Path) -> None:
    port = free_port()
    with Lab(["healthy", "iis-binding"]) as lab, FakeSlackApi() as slack_api, FakeSocketModeServer() as ws:
        slack_api.socket_mode_url = ws.url
        config = lab.write_config(tmp_path / "lab.toml")
        text = config.read_text().replace('mode = "socket"', f'mode = "socket"\napi_url = "{slack_api.url}"')
        not_today = WEEKDAYS[(datetime.now(UTC).weekday() + 3) % 7]  # no digest during this test
        text += f'\n[schedule]\nsweep_every_minutes = 60\nalert_channel = "{ALERTS}"\ndigest_weekday = "{not_today}"\n'
        text += f'\n[service]\nhealth_port = {port}\n'
        config.write_text(text)
        stop = threading.Event()
        out = io.StringIO()
        env = Environment(stdout=out, stderr=io.StringIO(), stdin=io.StringIO(),
                          environ={"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN})
        thread = threading.Thread(target=serve.run, args=(argparse.Namespace(config=str(config), command="serve"), env),
                                  kwargs={"stop": stop}, daemon=True)
        thread.start()
        try:
            (alert,) = slack_api.wait_for("chat.postMessage", 1, timeout=30,
                                          where=lambda c: c.body.get("channel") == ALERTS and not c.body.get("thread_ts"))
            assert "vpn-iis" in all_text(alert.body) and buttons(alert.body)
            deadline = time.monotonic() + 10
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                        body = response.read().decode()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            assert 'sstp_bot_server_healthy{server="vpn-healthy"} 1.0' in body
            assert 'sstp_bot_certificate_expiry_timestamp_seconds{server="vpn-iis"}' in body
            assert "scheduled sweeps every 60 minute(s)" in out.getvalue()
        finally:
            stop.set()
            thread.join(timeout=20)
        assert not thread.is_alive() and "stopped" in out.getvalue()
