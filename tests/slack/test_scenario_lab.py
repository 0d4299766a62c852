"""Scenario: the whole Slack flow with the real Service, storage and lab servers (loopback only).

Skipped where the use-case layer or the lab is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.blockkit import all_text, assert_slack_limits, buttons
from tests.fakes.harness import APPROVER, OPERATOR, OUTSIDER, Harness, build_harness
from tests.fakes.slack_api import FakeSlackApi

service_module = pytest.importorskip("bot.service")
lab_module = pytest.importorskip("commands.lab")
_ROOT = Path(__file__).resolve().parents[2]
if not all(Path(m.__file__ or "").resolve().is_relative_to(_ROOT) for m in (service_module, lab_module)):
    pytest.skip("the use-case layer and the lab are not in this source tree", allow_module_level=True)


@pytest.fixture
def lab_harness(tmp_path: Path, slack_api: FakeSlackApi) -> Iterator[tuple[Harness, Any]]:
    from bot.config import load_config

    with lab_module.Lab(["iis-binding", "healthy"]) as lab:
        config = load_config(lab.write_config(tmp_path / "lab.toml"), {})
        config = replace(config, slack=replace(config.slack, approvers=(APPROVER,), two_person_rule=True))
        service = service_module.build_service(config, {}, lambda: datetime.now(UTC))
        harness = build_harness(service, config, slack_api)
        try:
            yield harness, service
        finally:
            harness.close()


def broken_server(service: Any) -> str:
    return next(name for name in service.config.servers if "iis" in name)


def test_check_refuse_approve_fix_and_recheck(lab_harness: tuple[Harness, Any], slack_api: FakeSlackApi) -> None:
    harness, service = lab_harness
    server = broken_server(service)
    harness.command(f"check {server}", user=OPERATOR)
    card = slack_api.calls_to("chat.update")[-1]
    assert_slack_limits(card.body)
    assert "SSTP_HASH_MISMATCH" in all_text(card.body)
    plan_id = int(buttons(card.body)[0]["value"])
    assert service.get_plan(plan_id).message_ts == card.body["ts"]

    harness.click(plan_id, user=OUTSIDER)
    assert "not an approver" in slack_api.calls_to("chat.postEphemeral")[-1].body["text"]
    assert service.get_plan(plan_id).state == "PROPOSED"

    harness.click(plan_id, user=APPROVER)
    final = slack_api.calls_to("chat.update")[-1].body
    assert final["ts"] == card.body["ts"]
    assert "Fix applied" in all_text(final) and "healthy" in all_text(final)
    assert service.get_plan(plan_id).state == "SUCCEEDED"

    harness.click(plan_id, user=APPROVER)
    assert "already been carried out" in slack_api.calls_to("chat.postEphemeral")[-1].body["text"]


def test_requester_cannot_approve_own_plan(lab_harness: tuple[Harness, Any], slack_api: FakeSlackApi) -> None:
    harness, service = lab_harness
    harness.command(f"check {broken_server(service)}", user=APPROVER)
    plan_id = int(buttons(slack_api.calls_to("chat.update")[-1].body)[0]["value"])
    harness.click(plan_id, user=APPROVER)
    assert "Two-person rule" in slack_api.calls_to("chat.postEphemeral")[-1].body["text"]
    assert service.get_plan(plan_id).state == "PROPOSED"


def test_fleet_check_and_superseded_plan(lab_harness: tuple[Harness, Any], slack_api: FakeSlackApi) -> None:
    harness, service = lab_harness
    harness.command(f"check {broken_server(service)}")
    first = int(buttons(slack_api.calls_to("chat.update")[-1].body)[0]["value"])
    harness.command("check all")
    summary = slack_api.calls_to("chat.update")[-1].body
    assert "2 checked: 1 healthy, 1 with findings" in all_text(summary)
    harness.click(first, user=APPROVER)
    assert "replaced by a newer check" in slack_api.calls_to("chat.postEphemeral")[-1].body["text"]
