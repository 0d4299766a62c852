from __future__ import annotations

from bot.config import SlackConfig
from bot.slack.app import make_web_client
from bot.slack.auth import Authoriser
from tests.fakes.slack_api import FakeSlackApi
from tests.slack.conftest import APPROVER, APPROVER_GROUP, BOT_TOKEN, GROUP_APPROVER, OUTSIDER


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def authoriser(api: FakeSlackApi, clock: Clock, **cfg: object) -> Authoriser:
    config = SlackConfig(**{"approvers": (APPROVER, APPROVER_GROUP), **cfg})  # type: ignore[arg-type]
    return Authoriser(config, make_web_client(BOT_TOKEN, api.url), ttl_seconds=60, monotonic=clock)


def test_user_ids_and_groups(slack_api: FakeSlackApi) -> None:
    auth = authoriser(slack_api, Clock())
    assert auth.is_approver(APPROVER)
    assert auth.is_approver(GROUP_APPROVER)
    assert not auth.is_approver(OUTSIDER)
    assert not auth.is_approver("")
    call = slack_api.calls_to("usergroups.users.list")[0]
    assert call.body["usergroup"] == APPROVER_GROUP and call.token == BOT_TOKEN


def test_group_membership_is_cached_with_ttl(slack_api: FakeSlackApi) -> None:
    clock = Clock()
    auth = authoriser(slack_api, clock)
    for _ in range(5):
        assert auth.is_approver(GROUP_APPROVER)
        assert not auth.is_approver(OUTSIDER)
    assert len(slack_api.calls_to("usergroups.users.list")) == 1
    slack_api.usergroups[APPROVER_GROUP] = [OUTSIDER]
    clock.now += 30
    assert auth.is_approver(GROUP_APPROVER)  # still cached
    clock.now += 31
    assert not auth.is_approver(GROUP_APPROVER)
    assert auth.is_approver(OUTSIDER)
    assert len(slack_api.calls_to("usergroups.users.list")) == 2


def test_failed_lookup_fails_closed_and_is_not_cached(slack_api: FakeSlackApi) -> None:
    auth = authoriser(slack_api, Clock())
    slack_api.fail("usergroups.users.list", "missing_scope")
    assert not auth.is_approver(GROUP_APPROVER)
    assert auth.is_approver(GROUP_APPROVER)
    assert len(slack_api.calls_to("usergroups.users.list")) == 2


def test_operators_empty_means_everyone_approvers_empty_means_nobody(slack_api: FakeSlackApi) -> None:
    auth = authoriser(slack_api, Clock(), approvers=())
    assert auth.is_operator(OUTSIDER)
    assert not auth.is_approver(APPROVER)
    strict = authoriser(slack_api, Clock(), operators=("U0OPER001", APPROVER_GROUP))
    assert strict.is_operator("U0OPER001") and strict.is_operator(GROUP_APPROVER) and not strict.is_operator(OUTSIDER)


def test_channels(slack_api: FakeSlackApi) -> None:
    assert authoriser(slack_api, Clock()).channel_allowed("C0ANY0001")
    auth = authoriser(slack_api, Clock(), allowed_channels=("C0OPS0001",))
    assert auth.channel_allowed("C0OPS0001")
    assert not auth.channel_allowed("C0ANY0001")
    assert not auth.channel_allowed(None)
