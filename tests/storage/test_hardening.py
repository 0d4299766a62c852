"""Issue 14 in the storage layer: writes retried through a lock, a process releasing its own plans,
replay claims that expire at the request's own time, the write probe of /healthz."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from storage import PlanState, Repository
from storage.resilience import RUNNING_HERE

from .conftest import FakeClock, add_plan, drive


def lock_for(path: Path, seconds: float) -> threading.Event:
    """Hold SQLite's write lock from another connection for `seconds`; the event is set once held."""
    held = threading.Event()

    def run() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        held.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    threading.Thread(target=run, daemon=True).start()
    assert held.wait(5)
    return held


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "bot.db"


def test_an_audit_write_waits_out_a_lock_longer_than_the_busy_timeout(db: Path) -> None:
    repo = Repository(f"sqlite:///{db}", write_retry_seconds=5, busy_timeout_ms=100)
    lock_for(db, 0.8)
    started = time.monotonic()
    repo.audit(actor="U1", action="x", outcome="ok")
    assert 0.5 < time.monotonic() - started < 4
    repo.close()


def test_past_the_retry_budget_the_error_reaches_the_caller(db: Path) -> None:
    repo = Repository(f"sqlite:///{db}", write_retry_seconds=0.3, busy_timeout_ms=100)
    lock_for(db, 1.5)
    with pytest.raises(OperationalError):
        repo.audit(actor="U1", action="x", outcome="ok")
    repo.close()


def test_a_process_releases_its_own_plan_that_nothing_here_runs(db: Path) -> None:
    clock = FakeClock()
    repo = Repository(f"sqlite:///{db}", clock=clock)
    plan_id = add_plan(repo, clock)
    drive(repo, plan_id, PlanState.RUNNING)
    assert repo.running_plan("vpn01") is not None  # running here: left alone
    RUNNING_HERE.discard(str(repo._engine.url), plan_id)  # the code that ran it is gone (its end was lost)
    assert repo.running_plan("vpn01") is None  # not "another process": released at once
    plan = repo.get_plan(plan_id)
    assert plan.state == PlanState.INTERRUPTED
    assert "no longer runs it" in str(repo.plan_audit(plan_id)[-1].details["why"])
    repo.close()


def test_replay_claims_expire_at_their_own_time_and_survive_a_reopen(db: Path) -> None:
    clock = FakeClock()
    repo = Repository(f"sqlite:///{db}", clock=clock)
    now = clock().timestamp()
    assert repo.claim_request("k1", now + 300)
    assert not repo.claim_request("k1", now + 300)
    repo.close()
    again = Repository(f"sqlite:///{db}", clock=clock)
    assert not again.claim_request("k1", now + 300)  # a restart forgets nothing
    clock.advance(seconds=301)
    assert again.claim_request("k1", now + 900)  # expired claims are deleted
    again.release_request("k1")
    assert again.claim_request("k1", now + 900)
    again.close()


def test_the_write_probe_tells_a_locked_database(db: Path) -> None:
    repo = Repository(f"sqlite:///{db}")
    repo.writable()
    lock_for(db, 1.0)
    started = time.monotonic()
    with pytest.raises(OperationalError):
        repo.writable(timeout_ms=200)
    assert time.monotonic() - started < 1.0
    repo.close()


def test_a_replay_claim_does_not_wait_out_a_locked_database(db: Path) -> None:
    from bot.slack.server import ReplayGuard

    repo = Repository(f"sqlite:///{db}")
    guard = ReplayGuard(repo)
    lock_for(db, 2.0)
    started = time.monotonic()
    with pytest.raises(OperationalError):
        repo.claim_request("k", time.time() + 300)
    assert guard.claim("v0=abc", int(time.time()))  # the guard falls back to its memory
    assert not guard.claim("v0=abc", int(time.time()))
    assert time.monotonic() - started < 1.5  # Slack's 3 s are not spent waiting for the lock
    repo.close()
