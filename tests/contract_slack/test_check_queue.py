"""One check per server, whoever asks, and no Slack worker parked behind a server (issue 14, item 5).

Real Service + SQLite + the lab (real PSRP) + slack-bolt + the fake Slack Web API. Lab servers with
the `hang` fault start every script and never finish it, so each check of them runs into the
server's `operation_timeout` (set to a few seconds here).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.config import load_config
from bot.service import build_service
from bot.slack import messages
from commands.fleet import server_lock
from commands.lab import Lab
from tests.fakes.blockkit import all_text
from tests.fakes.harness import Harness, build_harness
from tests.fakes.lab_stack import ScriptRecorder
from tests.fakes.slack_api import FakeSlackApi

pytestmark = pytest.mark.slow

HANG, HANG2, HANG3, IIS, HEALTHY = "vpn-hang", "vpn-hang2", "vpn-hang3", "vpn-iis", "vpn-healthy"
HANG_SECONDS = 4.0
OTHER_USER = "U0OTHER99"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    hanging = (HANG, HANG2, HANG3)
    with Lab(["iis-binding", "healthy"], extra_servers=[(n, "healthy") for n in hanging],
             faults={n: ["hang"] for n in hanging}) as lab:
        yield lab


@pytest.fixture
def stack(lab: Lab, tmp_path: Path, slack_api: FakeSlackApi) -> Iterator[tuple[Harness, ScriptRecorder]]:
    config = load_config(lab.write_config(tmp_path / "lab.toml", database_url=f"sqlite:///{tmp_path / 'bot.db'}"), {})
    servers = {n: replace(s, operation_timeout=HANG_SECONDS) if n in (HANG, HANG2, HANG3) else s for n, s in config.servers.items()}
    config = replace(config, servers=servers)
    service = build_service(config, {}, lambda: datetime.now(UTC))
    recorder = ScriptRecorder(lab)
    recorder.clear()
    harness = build_harness(service, config, slack_api, checks_per_user=3)
    try:
        yield harness, recorder
    finally:
        harness.drain(timeout=30)
        harness.close()
        service.repo.close()


def wait_until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def probes(recorder: ScriptRecorder, server: str) -> int:
    return recorder.scripts[server].count("probe")


def test_a_fleet_check_and_single_checks_of_a_server_run_one_probe_of_it(
    stack: tuple[Harness, ScriptRecorder], slack_api: FakeSlackApi
) -> None:
    harness, recorder = stack
    harness.command(f"check {HANG}", user="U0OPER001", wait=False)
    wait_until(lambda: probes(recorder, HANG) == 1)  # the single check is under way
    harness.command(f"check {HANG} {IIS}", user="U0OPER002", wait=False)  # a fleet check joins it for HANG
    harness.command(f"check {IIS}", user="U0OPER003", wait=False)  # and a single check may join the fleet's
    harness.drain(timeout=30)

    assert probes(recorder, HANG) == 1
    assert probes(recorder, IIS) <= 2  # the single check of IIS joined the fleet's, or came after it ended
    # Every card got the one check's result: the single card and the fleet's detail reply for HANG.
    hang_reports = [c for c in slack_api.calls if f"SSTP check: {HANG}" in all_text(c.body)]
    assert {c.method for c in hang_reports} == {"chat.update", "chat.postMessage"}, [c.method for c in hang_reports]
    summary = [c for c in slack_api.calls_to("chat.update") if "fleet check" in all_text(c.body)]
    assert summary and "2 checked" in all_text(summary[-1].body), all_text(summary[-1].body)


def test_thirty_checks_of_a_hanging_server_do_not_hold_back_another_users_check(
    stack: tuple[Harness, ScriptRecorder], slack_api: FakeSlackApi
) -> None:
    harness, recorder = stack
    for n in range(30):  # ten operators, three requests each: single checks and fleet checks
        text = f"check {HANG}" if n % 3 else f"check {HANG} {HANG2}"
        answer = harness.command(text, user=f"U0OPER{n % 10:03d}", wait=False)
        assert "already have" not in str(answer.body)
    wait_until(lambda: probes(recorder, HANG) >= 1)
    started = time.monotonic()
    harness.command(f"check {HEALTHY}", user=OTHER_USER, wait=False)
    slack_api.wait_for("chat.update", where=lambda c: f"SSTP check: {HEALTHY}" in all_text(c.body), timeout=HANG_SECONDS * 3)
    took = time.monotonic() - started
    # The healthy server's check runs at once: well within the hanging check's own timeout.
    assert took < HANG_SECONDS * 0.75, f"{took:.2f} s"
    harness.drain(timeout=30)
    assert probes(recorder, HANG) == 1 and probes(recorder, HANG2) == 1 and probes(recorder, HEALTHY) == 1


def test_a_server_held_by_a_fix_is_answered_busy_without_waiting(
    stack: tuple[Harness, ScriptRecorder], slack_api: FakeSlackApi
) -> None:
    harness, recorder = stack
    lock = server_lock(IIS)  # the lock a fix of this server holds while it runs (Service.fix)
    with lock:
        started = time.monotonic()
        harness.command(f"check {IIS}", user="U0OPER001")  # drains: no worker waits for the lock
        harness.command(f"check {IIS} {HEALTHY}", user="U0OPER002")
        took = time.monotonic() - started
    assert took < HANG_SECONDS, f"{took:.2f} s"
    assert probes(recorder, IIS) == 0 and probes(recorder, HEALTHY) == 1
    busy = [c for c in slack_api.calls if "is busy" in all_text(c.body) and IIS in all_text(c.body)]
    assert {c.method for c in busy} == {"chat.update", "chat.postMessage"}  # the single card, the fleet's reply
    summary = [c for c in slack_api.calls_to("chat.update") if "fleet check" in all_text(c.body)]
    assert f"{IIS}: busy" in all_text(summary[-1].body), all_text(summary[-1].body)


def test_the_per_user_limit_answer_is_ephemeral_and_clear(
    stack: tuple[Harness, ScriptRecorder], slack_api: FakeSlackApi
) -> None:
    harness, recorder = stack
    user = "U0OPER005"
    for text in (f"check {HANG}", f"check {HANG2}", f"check {HANG3}"):  # three checks that stay running
        assert harness.command(text, user=user, wait=False).body == ""
    wait_until(lambda: probes(recorder, HANG3) == 1)
    posted = len(slack_api.calls_to("chat.postMessage"))
    refused = harness.command(f"check {HEALTHY}", user=user, wait=False)
    assert refused.status == 200
    # A slash command's immediate answer (plain text, or JSON without response_type "in_channel") is
    # shown to the caller only: Slack's ephemeral default.
    answer = json.loads(refused.body) if refused.body.startswith("{") else {"text": refused.body}
    assert answer.get("response_type", "ephemeral") == "ephemeral"
    assert answer["text"] == messages.too_many_checks(3)
    assert "You already have 3 checks waiting or running" in answer["text"]
    time.sleep(0.2)
    assert len(slack_api.calls_to("chat.postMessage")) == posted and probes(recorder, HEALTHY) == 0  # nothing ran
    other = harness.command(f"check {HEALTHY}", user=OTHER_USER, wait=False)  # another user is not limited
    assert other.body == ""
    harness.drain(timeout=30)
    assert probes(recorder, HEALTHY) == 1
