"""The App Home tab (DESIGN 8 [2]): `app_home_opened` -> `views.publish` with the fleet, worst first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.request import BoltRequest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.config import load_config
from bot.operations import FleetRow, sort_worst_first
from bot.service import build_service
from bot.slack.home import HOME_CHECK_ACTION, MAX_VIEW_BLOCKS, home_view
from commands.lab import Lab
from tests.fakes import payloads
from tests.fakes.blockkit import all_text, buttons
from tests.fakes.harness import APPROVER, CHANNEL, OPERATOR, OUTSIDER, Harness, build_harness
from tests.fakes.slack_api import TEAM_ID, FakeSlackApi

NOW = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)


def validate_home(view: dict[str, Any]) -> None:
    """slack_sdk's own model validation plus the Home tab's limits."""
    assert view["type"] == "home"
    assert len(view["blocks"]) <= MAX_VIEW_BLOCKS
    View(**view).validate_json()
    for raw in view["blocks"]:
        block = Block.parse(raw)
        assert block is not None
        block.validate_json()
        if raw["type"] == "section":
            assert len(raw["text"]["text"]) <= 3000
    assert len(json.dumps(view)) < 250_000


def fleet(n: int) -> list[FleetRow]:
    rows = []
    for i in range(n):
        status = "error" if i % 97 == 0 else "unhealthy" if i % 11 == 0 else None if i % 53 == 0 else "healthy"
        findings = ("IIS_HTTPS_BINDING", "SSTP_HASH_MISMATCH") if status == "unhealthy" else ()
        rows.append(FleetRow(f"vpn-{i:03d}.region-{i % 7}", status, findings,
                             None if status is None else NOW - timedelta(minutes=i),
                             "unreachable" if status == "error" else None,
                             NOW + timedelta(days=i - 20) if status in ("healthy", "unhealthy") else None,
                             i - 20 if status in ("healthy", "unhealthy") else None))
    return sort_worst_first(rows)


@pytest.mark.parametrize("size", [0, 3, 79, 81, 500])
@pytest.mark.parametrize("operator", [True, False])
def test_home_view_names_every_server_within_slack_limits(size: int, operator: bool) -> None:
    rows = fleet(size)
    view = home_view(rows, operator=operator, now=NOW).to_dict()
    validate_home(view)
    text = all_text(view)
    for row in rows:
        assert row.server in text, row.server
    checks = [b["accessory"] for b in view["blocks"] if b.get("accessory", {}).get("action_id") == HOME_CHECK_ACTION]
    assert bool(checks) == (operator and size > 0)
    if size:
        # Worst first: the first server shown is one that could not be checked.
        first = next(b for b in view["blocks"] if b["type"] == "section")
        assert "could not check" in first["text"]["text"]
    if size == 500:
        assert f"{size} server(s)" in text


@pytest.fixture
def slack_api() -> Iterator[FakeSlackApi]:
    with FakeSlackApi() as api:
        yield api


def open_home(harness: Harness, user: str) -> None:
    body = {
        "token": "legacy-verification-token", "team_id": TEAM_ID, "api_app_id": payloads.APP_ID, "type": "event_callback",
        "event_id": f"Ev{user}", "event_time": 1765184400,
        "event": {"type": "app_home_opened", "user": user, "channel": "D0HOME001", "tab": "home",
                  "event_ts": "1765184400.000100"},
    }
    response = harness.app.dispatch(BoltRequest(body=json.dumps(body), headers={"content-type": ["application/json"]}))
    assert response.status == 200
    harness.drain()


def test_app_home_opened_publishes_the_lab_fleet(tmp_path: Path, slack_api: FakeSlackApi) -> None:
    with Lab(["healthy", "iis-binding", "expired-with-renewal"]) as lab:
        config = load_config(lab.write_config(tmp_path / "lab.toml"), {})
        config = replace(config, slack=replace(config.slack, operators=(OPERATOR,)))
        service = build_service(config, {}, lambda: datetime.now(UTC))
        harness = build_harness(service, config, slack_api)
        try:
            open_home(harness, OPERATOR)
            view = slack_api.views[OPERATOR]
            validate_home(view)
            assert "never checked" in all_text(view) and "vpn-iis" in all_text(view)

            service.check(service.resolve_targets(all_servers=True), payloads_actor())
            open_home(harness, OPERATOR)
            view = slack_api.views[OPERATOR]
            validate_home(view)
            sections = [b for b in view["blocks"] if b["type"] == "section"]
            names = [next(n for n in lab.servers if f"*{n}*" in s["text"]["text"]) for s in sections]
            assert names[-1] == "vpn-healthy"  # worst first: the healthy server last
            iis = sections[names.index("vpn-iis")]["text"]["text"]
            assert "unhealthy" in iis and "IIS_HTTPS_BINDING" in iis and "certificate expires" in iis
            expired = sections[names.index("vpn-expired")]["text"]["text"]
            assert "certificate expired" in expired
            assert all(s["accessory"]["action_id"] == HOME_CHECK_ACTION for s in sections)

            # Not an operator: the same fleet, no Check button; a forged click is refused and audited.
            open_home(harness, OUTSIDER)
            outsider_view = slack_api.views[OUTSIDER]
            assert not any("accessory" in b for b in outsider_view["blocks"])
            before = len(service.history("vpn-healthy", 50))
            harness.app.dispatch(BoltRequest(
                body=payloads.actions_body(payloads.block_actions(HOME_CHECK_ACTION, "vpn-healthy", user=OUTSIDER)),
                headers={"content-type": ["application/x-www-form-urlencoded"]}))
            harness.drain()
            assert len(service.history("vpn-healthy", 50)) == before

            # An operator's Check runs a check and republishes the tab.
            publishes = len(slack_api.calls_to("views.publish"))
            harness.app.dispatch(BoltRequest(
                body=payloads.actions_body(payloads.block_actions(HOME_CHECK_ACTION, "vpn-healthy", user=OPERATOR)),
                headers={"content-type": ["application/x-www-form-urlencoded"]}))
            harness.drain()
            assert len(service.history("vpn-healthy", 50)) == before + 1
            assert len(slack_api.calls_to("views.publish")) == publishes + 1
        finally:
            harness.close()
            service.close()


def payloads_actor() -> Any:
    from bot.slack.ports import slack_actor

    return slack_actor(OPERATOR)


def home_check(harness: Harness, server: str, user: str = OPERATOR) -> None:
    """The Home tab's Check button as Slack sends it: a `block_actions` click in a view, no channel."""
    click = payloads.block_actions(HOME_CHECK_ACTION, server, user=user)
    click["container"] = {"type": "view", "view_id": "V0HOME001"}
    click.pop("channel")
    click.pop("message")
    click["view"] = {"id": "V0HOME001", "type": "home", "blocks": []}
    response = harness.app.dispatch(BoltRequest(body=payloads.actions_body(click),
                                                headers={"content-type": ["application/x-www-form-urlencoded"]}))
    assert response.status == 200
    harness.drain()


def test_a_home_check_retires_the_channel_card_it_supersedes_and_leaves_no_plan_without_a_card(
    tmp_path: Path, slack_api: FakeSlackApi
) -> None:
    with Lab(["iis-binding"]) as lab:
        config = load_config(lab.write_config(tmp_path / "lab.toml"), {})
        config = replace(config, slack=replace(config.slack, operators=(OPERATOR,), approvers=(APPROVER,)))
        service = build_service(config, {}, lambda: datetime.now(UTC))
        harness = build_harness(service, config, slack_api)
        try:
            harness.command("check vpn-iis", user=OPERATOR)
            (card,) = [c.body for c in slack_api.calls_to("chat.update") if buttons(c.body)]
            plan_id = int(buttons(card)[0]["value"])
            card_ts = card["ts"]

            home_check(harness, "vpn-iis")

            # The channel card of the plan the Home check replaced no longer offers Approve/Reject.
            assert service.get_plan(plan_id).state == "SUPERSEDED"
            retired = [c.body for c in slack_api.calls_to("chat.update") if c.body["ts"] == card_ts][-1]
            assert retired["channel"] == CHANNEL and buttons(retired) == []
            assert "replaced this plan" in all_text(retired) and "/sstp check vpn-iis" in all_text(retired)
            # No plan is left PROPOSED where no card can approve it.
            plans = [e.plan for e in service.history("vpn-iis", 50) if e.plan is not None]
            assert [p.id for p in plans if p.state == "PROPOSED" and p.message_ts is None] == []
            # The Home tab shows the new result.
            assert "IIS_HTTPS_BINDING" in all_text(slack_api.views[OPERATOR])
        finally:
            harness.close()
            service.close()
