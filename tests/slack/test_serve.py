"""`sstp-bot serve`: secrets from the environment, never printed; both modes start and stop."""

from __future__ import annotations

import argparse
import io
import logging
import sys
import threading
import types
from pathlib import Path

import pytest

from bot.cli import Environment, ExitStatus, main, serve
from bot.slack.redact import RedactSecrets, redact
from tests.fakes.healthz import wait_for_healthz
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.socket_mode import FakeSocketModeServer
from tests.slack.conftest import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET
from tests.slack.fake_service import FakeService


def write_config(tmp_path: Path, api_url: str, mode: str = "socket", port: int = 0) -> Path:
    path = tmp_path / "sstp-bot.toml"
    path.write_text(
        f"""
[slack]
mode = "{mode}"
api_url = "{api_url}"
http_port = {port or 1}
approvers = ["U0APPR001"]

[servers.vpn01]
host = "127.0.0.1"
"""
    )
    return path


def run_main(argv: list[str], environ: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, Environment(stdout=out, stderr=err, stdin=io.StringIO(), environ=environ))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("mode", "environ", "missing"),
    [
        ("socket", {}, "SLACK_BOT_TOKEN"),
        ("socket", {"SLACK_BOT_TOKEN": BOT_TOKEN}, "SLACK_APP_TOKEN"),
        ("http", {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN}, "SLACK_SIGNING_SECRET"),
    ],
)
def test_missing_secret_is_named(tmp_path: Path, mode: str, environ: dict[str, str], missing: str) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/api/", mode)
    code, out, err = run_main(["--config", str(config), "serve"], environ)
    assert code == ExitStatus.ERROR
    assert missing in err
    assert BOT_TOKEN not in out + err and APP_TOKEN not in out + err


def test_wrong_token_kind_is_refused_without_echoing_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/api/")
    code, _out, err = run_main(["--config", str(config), "serve"], {"SLACK_BOT_TOKEN": APP_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN})
    assert code == ExitStatus.ERROR and "xoxb-" in err and APP_TOKEN not in err


def test_redaction() -> None:
    assert BOT_TOKEN not in redact(f"token={BOT_TOKEN} app={APP_TOKEN}")
    assert redact(BOT_TOKEN) == "[REDACTED]"
    assert redact("connecting with password=hunter2 as svc") == "connecting with password=[REDACTED] as svc"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets())
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("calling with %s", BOT_TOKEN)
        try:
            raise RuntimeError(APP_TOKEN)
        except RuntimeError:
            log.exception("boom")
        log.warning("WinRM call with %s", {"password": "hunter2"})
    finally:
        log.removeHandler(handler)
    assert BOT_TOKEN not in stream.getvalue() and APP_TOKEN not in stream.getvalue()
    assert "hunter2" not in stream.getvalue()
    assert "[REDACTED]" in stream.getvalue()


@pytest.fixture
def fake_service_module(monkeypatch: pytest.MonkeyPatch) -> list[FakeService]:
    built: list[FakeService] = []
    module = types.ModuleType("bot.service")

    def build_service(config, environ, clock):  # type: ignore[no-untyped-def]
        built.append(FakeService(config))
        return built[-1]

    module.build_service = build_service  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bot.service", module)
    return built


def start_serve(config: Path, environ: dict[str, str]) -> tuple[threading.Thread, threading.Event, io.StringIO, io.StringIO]:
    stop = threading.Event()
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, stdin=io.StringIO(), environ=environ)
    args = argparse.Namespace(config=str(config), command="serve")
    thread = threading.Thread(target=serve.run, args=(args, env), kwargs={"stop": stop}, daemon=True)
    thread.start()
    return thread, stop, out, err


def test_serve_socket_mode_connects_and_stops(tmp_path: Path, slack_api: FakeSlackApi, fake_service_module: list[FakeService]) -> None:
    with FakeSocketModeServer() as ws:
        slack_api.socket_mode_url = ws.url
        config = write_config(tmp_path, slack_api.url)
        thread, stop, out, err = start_serve(config, {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN})
        try:
            ws.wait_connections(1)
            assert fake_service_module
        finally:
            stop.set()
            thread.join(timeout=15)
        assert not thread.is_alive()
        assert "stopped" in out.getvalue()
        assert BOT_TOKEN not in out.getvalue() + err.getvalue()
        assert fake_service_module[0].count("close") == 1  # the database is released on the way out


def test_serve_http_mode_answers_healthz(tmp_path: Path, slack_api: FakeSlackApi, fake_service_module: list[FakeService]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = write_config(tmp_path, slack_api.url, mode="http", port=port)
    thread, stop, out, _ = start_serve(config, {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET})
    try:
        assert wait_for_healthz(f"http://127.0.0.1:{port}") == 200
    finally:
        stop.set()
        thread.join(timeout=15)
    assert not thread.is_alive() and "HTTP mode" in out.getvalue()


@pytest.mark.parametrize(("method", "variable"), [("auth.test", "SLACK_BOT_TOKEN"), ("apps.connections.open", "SLACK_APP_TOKEN")])
def test_token_refused_by_slack_is_a_clear_error(
    tmp_path: Path, slack_api: FakeSlackApi, fake_service_module: list[FakeService], method: str, variable: str
) -> None:
    slack_api.socket_mode_url = "ws://127.0.0.1:9/"
    slack_api.fail(method, "invalid_auth", times=10)
    config = write_config(tmp_path, slack_api.url)
    code, out, err = run_main(["--config", str(config), "serve"], {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN})
    assert code == ExitStatus.ERROR
    assert f"Slack refused {variable}" in err and "invalid_auth" in err
    assert BOT_TOKEN not in out + err and APP_TOKEN not in out + err


def test_unreachable_slack_is_a_clear_error(tmp_path: Path, fake_service_module: list[FakeService]) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/api/")
    code, _, err = run_main(["--config", str(config), "serve"], {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN})
    assert code == ExitStatus.ERROR and "cannot reach the Slack Web API" in err


def test_http_port_in_use_is_a_clear_error(tmp_path: Path, slack_api: FakeSlackApi, fake_service_module: list[FakeService]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = write_config(tmp_path, slack_api.url, mode="http", port=busy.getsockname()[1])
        code, _, err = run_main(["--config", str(config), "serve"], {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET})
    assert code == ExitStatus.ERROR and "cannot listen on 127.0.0.1:" in err
    assert SIGNING_SECRET not in err


def test_a_port_in_use_leaves_no_socket_or_pipe_open() -> None:
    import os
    import socket

    from bot.slack.server import HttpServer

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        before = open_fds()
        with pytest.raises(OSError):
            HttpServer(lambda environ, start_response: [], "127.0.0.1", busy.getsockname()[1], threads=1)  # type: ignore[arg-type]
        assert open_fds() == before  # waitress's listening socket and wake-up pipe are closed
