"""Fixtures for the Slack adapter: a fake Web API on loopback, a fake service, a bolt app wired to both.

Reusable pieces live in `tests/fakes/` (`harness.py`, `slack_api.py`, `socket_mode.py`, `payloads.py`);
scenario tests with the real Service need only `build_harness(service, config, slack_api)`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.config import Config
from bot.slack.app import SstpApp, create_app, make_web_client
from bot.slack.server import socket_mode_handler
from tests.fakes.harness import (
    APP_TOKEN,
    APPROVER,
    APPROVER_GROUP,
    BOT_TOKEN,
    CHANNEL,
    GROUP_APPROVER,
    OPERATOR,
    OUTSIDER,
    SIGNING_SECRET,
    Harness,
    build_harness,
    make_config,
)
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.socket_mode import FakeSocketModeServer
from tests.slack.fake_service import FakeService

__all__ = [
    "APPROVER", "APPROVER_GROUP", "APP_TOKEN", "BOT_TOKEN", "CHANNEL", "GROUP_APPROVER", "OPERATOR", "OUTSIDER",
    "SIGNING_SECRET", "Harness", "build_harness", "make_config",
]


@pytest.fixture
def slack_api() -> Iterator[FakeSlackApi]:
    with FakeSlackApi() as api:
        api.usergroups[APPROVER_GROUP] = [GROUP_APPROVER]
        yield api


@pytest.fixture
def config() -> Config:
    return make_config()


@pytest.fixture
def service(config: Config) -> FakeService:
    return FakeService(config)


@pytest.fixture
def harness(service: FakeService, config: Config, slack_api: FakeSlackApi) -> Iterator[Harness]:
    h = build_harness(service, config, slack_api)
    yield h
    h.close()


@pytest.fixture
def socket_server(slack_api: FakeSlackApi) -> Iterator[FakeSocketModeServer]:
    """A loopback Socket Mode server that `apps.connections.open` on the fake Web API points to."""
    with FakeSocketModeServer() as server:
        slack_api.socket_mode_url = server.url
        yield server


@pytest.fixture
def connected(service: FakeService, config: Config, slack_api: FakeSlackApi, socket_server: FakeSocketModeServer) -> Iterator[SstpApp]:
    """A bolt app over the fake service, connected in Socket Mode to `socket_server` (one connection open)."""
    app = create_app(service, config, client=make_web_client(BOT_TOKEN, slack_api.url))
    handler = socket_mode_handler(app, APP_TOKEN, ping_interval=0.2)
    handler.connect()
    socket_server.wait_connections(1)
    yield app
    handler.close()
    app.sstp.close()
