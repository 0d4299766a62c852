"""DESIGN 7: `[slack]` keys and secrets from the environment, end to end through `python -m bot serve`:
HTTP mode listens on http_host:http_port (/slack/events, /healthz), talks to api_url, verifies
signatures with SLACK_SIGNING_SECRET; a missing secret stops serve with a message naming it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from commands.lab import Lab
from tests.contract_slack.conftest import APPROVER, OPERATOR
from tests.fakes import payloads
from tests.fakes.blockkit import buttons
from tests.fakes.slack_api import FakeSlackApi

REPO = Path(__file__).resolve().parents[2]
BOT_TOKEN = "xoxb-9999-8888-contracttoken"
SIGNING_SECRET = "c0ntract5ecret0000000000000000ab"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(lab: Lab, tmp_path: Path, slack_lines: list[str]) -> Path:
    path = lab.write_config(tmp_path / "bot.toml", database_url=f"sqlite:///{tmp_path / 'bot.db'}")
    text = path.read_text(encoding="utf-8")
    head, rest = text.split("[slack]\n", 1)
    rest = rest.split("\n[database]", 1)[1]
    path.write_text(head + "[slack]\n" + "\n".join(slack_lines) + "\n\n[database]" + rest, encoding="utf-8")
    return path


def env_with(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_") and k != "SSTP_BOT_CONFIG"}
    env["PYTHONPATH"] = str(REPO)
    env.update(values)
    return env


def test_http_mode_serve_listens_where_configured_and_uses_api_url(tmp_path: Path, slack_api: FakeSlackApi) -> None:
    port = free_port()
    with Lab(["iis-binding"]) as lab:
        config = write_config(lab, tmp_path, [
            'mode = "http"', 'http_host = "127.0.0.1"', f"http_port = {port}", f'api_url = "{slack_api.url}"',
            f'approvers = ["{APPROVER}"]', "two_person_rule = true", "plan_ttl_minutes = 15",
        ])
        proc = subprocess.Popen([sys.executable, "-m", "bot", "--config", str(config), "serve"], cwd=str(REPO),
                                env=env_with(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                        health = json.loads(r.read())
                        break
                except (urllib.error.URLError, ConnectionError):
                    assert proc.poll() is None, proc.communicate()[1]
                    assert time.monotonic() < deadline, "serve never listened"
                    time.sleep(0.1)
            assert health["status"] == "ok"
            body = payloads.form_body(payloads.slash_command("check vpn-iis", user=OPERATOR, response_url=slack_api.response_url()))

            def post(data: str, headers: dict[str, str]) -> int:
                req = urllib.request.Request(base + "/slack/events", data=data.encode(), headers=headers, method="POST")
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        return r.status
                except urllib.error.HTTPError as exc:
                    return exc.code

            assert post(body, payloads.sign("wrong", body)) == 401
            started = time.monotonic()
            assert post(body, payloads.sign(SIGNING_SECRET, body)) == 200
            assert time.monotonic() - started < 3
            card = slack_api.wait_for("chat.update", where=lambda c: bool(buttons(c.body)), timeout=30)[-1]
            assert card.token == BOT_TOKEN
            assert "SSTP_HASH_MISMATCH" in json.dumps(card.body)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
        assert BOT_TOKEN not in out + err and SIGNING_SECRET not in out + err


@pytest.mark.parametrize(("mode", "present", "missing"), [
    ("http", {"SLACK_BOT_TOKEN": BOT_TOKEN}, "SLACK_SIGNING_SECRET"),
    ("socket", {"SLACK_BOT_TOKEN": BOT_TOKEN}, "SLACK_APP_TOKEN"),
    ("socket", {"SLACK_APP_TOKEN": "xapp-1-A0-secretvalue"}, "SLACK_BOT_TOKEN"),
])
def test_missing_secret_stops_serve_naming_the_variable(tmp_path: Path, slack_api: FakeSlackApi, mode: str, present: dict[str, str], missing: str) -> None:
    with Lab(["healthy"]) as lab:
        config = write_config(lab, tmp_path, [f'mode = "{mode}"', f'api_url = "{slack_api.url}"', f"http_port = {free_port()}"])
        out = subprocess.run([sys.executable, "-m", "bot", "--config", str(config), "serve"], cwd=str(REPO), env=env_with(**present),
                             capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert missing in out.stdout + out.stderr
    for value in present.values():
        assert value not in out.stdout + out.stderr
    assert not re.search(r"Traceback", out.stderr)
