"""Who runs a plan, and start-up recovery that only interrupts plans whose runner is gone."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from storage import PlanState, Repository
from storage.engine import build_engine
from storage.runner import current_runner, describe_runner, parse_runner, runner_is_dead

from .conftest import FakeClock, add_plan, drive

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")


def _with(runner: str, **changes: str) -> str:
    fields = parse_runner(runner)
    assert fields is not None
    fields.update(changes)
    return " ".join(f"{k}={v}" for k, v in fields.items())


def _set_runner(db_url: str, plan_id: int, runner: str | None) -> None:
    engine = build_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE plans SET runner = :runner WHERE id = :id"), {"runner": runner, "id": plan_id})
    engine.dispose()


def _exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- the identity ----------------------------------------------------------------------------------


def test_current_runner_names_this_process() -> None:
    fields = parse_runner(current_runner())
    assert fields is not None
    assert fields["pid"] == str(os.getpid()) and fields["host"] == socket.gethostname()
    if sys.platform.startswith("linux"):
        assert fields["start"].isdigit()
        assert fields["boot"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        assert set(fields) == {"host", "pid", "start", "boot", "pidns"}
    assert describe_runner(current_runner()) == f"pid {os.getpid()} on {socket.gethostname()}"


def test_host_names_with_odd_characters_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "bot host=1")
    runner = current_runner()
    assert runner.startswith("host=bot%20host%3D1 ")
    assert describe_runner(runner) == f"pid {os.getpid()} on bot host=1"
    assert runner_is_dead(runner) is False


def test_this_process_is_alive() -> None:
    assert runner_is_dead(current_runner()) is False


def test_an_exited_process_is_dead() -> None:
    assert runner_is_dead(_with(current_runner(), pid=str(_exited_pid()))) is True


@linux_only
def test_a_zombie_is_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        stat = Path(f"/proc/{proc.pid}/stat")
        deadline = time.monotonic() + 30
        while stat.read_text().rpartition(")")[2].split()[0] != "Z":  # exited, not yet reaped
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert runner_is_dead(_with(current_runner(), pid=str(proc.pid))) is True
    finally:
        proc.wait()


@linux_only
def test_a_reused_pid_is_dead() -> None:
    """Same host, same pid, but another process: a different start time, or another boot."""
    mine = current_runner()
    fields = parse_runner(mine)
    assert fields is not None
    assert runner_is_dead(_with(mine, start=str(int(fields["start"]) - 1))) is True
    assert runner_is_dead(_with(mine, boot="00000000-0000-0000-0000-000000000000")) is True


def test_another_host_cannot_be_told() -> None:
    assert runner_is_dead(_with(current_runner(), host="another-host")) is None
    assert runner_is_dead(_with(current_runner(), host="another-host", pid=str(_exited_pid()))) is None


@linux_only
def test_another_pid_namespace_cannot_be_told() -> None:
    assert runner_is_dead(_with(current_runner(), pidns="1", pid=str(_exited_pid()))) is None


# The last value holds this host's name and this process's PID: its test id must not (pytest-xdist
# workers collect the same ids, and a PID differs per worker).
@pytest.mark.parametrize("runner", ["", "garbage", "host=x", "host=x pid=0", "host=x pid=-3", "pid=12",
                                    "host= pid=1", f"{socket.gethostname()} {os.getpid()}"],
                         ids=["empty", "garbage", "host-only", "pid-zero", "pid-negative", "pid-only",
                              "empty-host", "bare-host-and-pid"])
def test_a_value_that_is_not_an_identity_cannot_be_told(runner: str) -> None:
    assert parse_runner(runner) is None
    assert runner_is_dead(runner) is None


def test_without_proc_host_and_pid_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Elsewhere (macOS, BSD): host and pid, existence checked with signal 0."""
    monkeypatch.setattr(sys, "platform", "darwin")
    mine = current_runner()
    assert set(parse_runner(mine) or {}) == {"host", "pid"}
    assert runner_is_dead(mine) is False
    assert runner_is_dead(_with(mine, pid=str(_exited_pid()))) is True
    assert runner_is_dead(_with(mine, host="another-host")) is None


# -- recovery at start-up --------------------------------------------------------------------------


def test_starting_a_plan_records_its_runner(repo: Repository, clock: FakeClock) -> None:
    plan_id = add_plan(repo, clock)
    drive(repo, plan_id, PlanState.APPROVED)
    assert repo.get_plan(plan_id).runner is None
    plan = repo.transition(plan_id, PlanState.APPROVED, PlanState.RUNNING, actor="system")
    assert plan.runner == current_runner()
    done = repo.transition(plan_id, PlanState.RUNNING, PlanState.SUCCEEDED, actor="system")
    assert done.runner == plan.runner  # kept: who ran it


def test_a_plan_run_by_this_live_process_is_left_alone(db_url: str, clock: FakeClock) -> None:
    with Repository(db_url, clock=clock) as runner_repo:
        plan_id = add_plan(runner_repo, clock)
        drive(runner_repo, plan_id, PlanState.RUNNING)
        with Repository(db_url, clock=clock) as other:  # another start-up while it runs
            assert other.recover_interrupted() == []
            assert other.get_plan(plan_id).state == PlanState.RUNNING
        # The real fix's final transition still goes through.
        assert runner_repo.transition(plan_id, PlanState.RUNNING, PlanState.SUCCEEDED, actor="system").state == (
            "SUCCEEDED"
        )


def test_a_legacy_plan_without_runner_is_interrupted(db_url: str, repo: Repository, clock: FakeClock) -> None:
    plan_id = add_plan(repo, clock)
    drive(repo, plan_id, PlanState.RUNNING)
    _set_runner(db_url, plan_id, None)
    asked: list[str] = []

    def alive(runner: str) -> bool:
        asked.append(runner)
        return False

    assert repo.recover_interrupted(is_dead=alive) == [plan_id]
    assert asked == []  # nothing to ask about: no runner recorded
    last = repo.plan_audit(plan_id)[-1]
    assert (last.action, last.actor, last.outcome) == ("interrupt", "system", "ok")
    assert last.details["runner"] is None and "no runner recorded" in last.details["why"]


def test_another_hosts_plan_is_left_alone(db_url: str, repo: Repository, clock: FakeClock,
                                         caplog: pytest.LogCaptureFixture) -> None:
    plan_id = add_plan(repo, clock)
    drive(repo, plan_id, PlanState.RUNNING)
    elsewhere = _with(current_runner(), host="bot-b.corp.example.com", pid=str(_exited_pid()))
    _set_runner(db_url, plan_id, elsewhere)
    with caplog.at_level(logging.INFO, logger="storage.repository"):
        assert repo.recover_interrupted() == []
    assert repo.get_plan(plan_id).state == PlanState.RUNNING
    assert f"plan {plan_id} on vpn01 is left RUNNING" in caplog.text
    assert "bot-b.corp.example.com" in caplog.text and "cannot be checked from this host" in caplog.text


def test_a_plan_whose_pid_was_reused_is_interrupted(db_url: str, repo: Repository, clock: FakeClock) -> None:
    plan_id = add_plan(repo, clock)
    drive(repo, plan_id, PlanState.RUNNING)
    fields = parse_runner(current_runner())
    assert fields is not None
    if sys.platform.startswith("linux"):  # this very pid, started at another time: another process
        gone = _with(current_runner(), start=str(int(fields["start"]) + 12345))
    else:
        gone = _with(current_runner(), pid=str(_exited_pid()))
    _set_runner(db_url, plan_id, gone)
    assert repo.recover_interrupted() == [plan_id]
    plan = repo.get_plan(plan_id)
    assert plan.state == PlanState.INTERRUPTED and plan.finished_at == clock()
    last = repo.plan_audit(plan_id)[-1]
    assert last.details["runner"] == gone and "no longer exists" in last.details["why"]


def test_only_dead_runners_are_interrupted(db_url: str, repo: Repository, clock: FakeClock) -> None:
    verdicts: dict[str, bool | None] = {"vpn01": True, "vpn02": False, "vpn03": None}
    plans: dict[str, int] = {}
    for n, server in enumerate(verdicts, start=1):
        plans[server] = add_plan(repo, clock, server)
        drive(repo, plans[server], PlanState.RUNNING)
        _set_runner(db_url, plans[server], f"host={server}-bot pid={n}")
    asked: list[str] = []

    def is_dead(runner: str) -> bool | None:
        asked.append(runner)
        return verdicts[runner.split()[0].removeprefix("host=").removesuffix("-bot")]

    assert repo.recover_interrupted(is_dead=is_dead) == [plans["vpn01"]]
    assert asked == ["host=vpn01-bot pid=1", "host=vpn02-bot pid=2", "host=vpn03-bot pid=3"]
    states = {s: repo.get_plan(p).state for s, p in plans.items()}
    assert states == {"vpn01": "INTERRUPTED", "vpn02": "RUNNING", "vpn03": "RUNNING"}
    for server in ("vpn02", "vpn03"):  # nothing audited for the plans left alone
        assert [e.action for e in repo.plan_audit(plans[server])][-1] == "start"
    last = repo.plan_audit(plans["vpn01"])[-1]
    assert last.details["why"] == "the process running it (pid 1 on vpn01-bot) no longer exists"
