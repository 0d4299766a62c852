"""Fixtures for the Slack adapter: a fake Web API on loopback, a fake service, a bolt app wired to both.

Reusable pieces live in `tests/fakes/` (`harness.py`, `slack_api.py`, `socket_mode.py`, `payloads.py`);
scenario tests with the real Service need only `build_harness(service, config, slack_api)`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.config import Config
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
