"""The same repository on PostgreSQL. Runs only when SSTP_BOT_TEST_POSTGRES_URL names a database
that may be wiped (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/sstpbot_test)."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from commands.errors import PlanStateError
from storage import PlanState, Repository
from storage.engine import build_engine
from storage.migrate import upgrade
from storage.models import Base

from .conftest import FakeClock, add_check, add_plan, sample_snapshot

URL = os.environ.get("SSTP_BOT_TEST_POSTGRES_URL", "")
pytestmark = pytest.mark.skipif(not URL, reason="SSTP_BOT_TEST_POSTGRES_URL is not set")


@pytest.fixture
def pg_url() -> Iterator[str]:
    engine = create_engine(URL)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
        conn.execute(text("DROP FUNCTION IF EXISTS sstp_bot_audit_append_only() CASCADE"))
    engine.dispose()
    yield URL


def test_schema_matches_the_models(pg_url: str) -> None:
    engine = build_engine(pg_url)
    upgrade(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


def test_repository_on_postgres(pg_url: str) -> None:
    clock = FakeClock()
    with Repository(pg_url, clock=clock) as repo:
        for _ in range(3):
            add_check(repo, clock, snapshot=sample_snapshot(collected_at=clock().isoformat()))
            clock.advance(hours=6)
        assert len({repo.get_check(i).snapshot_hash for i in (1, 2, 3)}) == 1
        assert [c.server for c in repo.latest_checks()] == ["vpn01"]
        plan_id = add_plan(repo, clock)
        barrier = threading.Barrier(10)
        outcomes: list[str] = []

        def approve(n: int) -> None:
            barrier.wait()
            try:
                repo.transition(plan_id, PlanState.PROPOSED, PlanState.APPROVED, actor=f"U{n}")
                outcomes.append("won")
            except PlanStateError:
                outcomes.append("lost")

        threads = [threading.Thread(target=approve, args=(n,)) for n in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert Counter(outcomes) == {"won": 1, "lost": 9}
        repo.transition(plan_id, PlanState.APPROVED, PlanState.RUNNING, actor="system")
        second = add_plan(repo, clock)
        repo.transition(second, PlanState.PROPOSED, PlanState.APPROVED, actor="U2")
        with pytest.raises(PlanStateError, match="already running"):
            repo.transition(second, PlanState.APPROVED, PlanState.RUNNING, actor="system")
        clock.advance(days=30)
        assert repo.get_plan(plan_id).runner is not None
        assert repo.recover_interrupted() == []  # its runner (this process) is alive
        assert repo.recover_interrupted(is_dead=lambda _runner: True) == [plan_id]
        expiring = add_plan(repo, clock, "vpn02", ttl=timedelta(minutes=1))
        clock.advance(minutes=1)
        assert repo.expire_due() == [expiring]
        assert repo.prune_snapshots(7) == 1
        assert len(repo.history("vpn01", limit=50)) > 5
    engine = create_engine(pg_url)
    for statement in ("UPDATE audit SET outcome = 'x'", "DELETE FROM audit", "TRUNCATE audit"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    engine.dispose()


def test_upgrade_from_revision_1_on_postgres(pg_url: str) -> None:
    engine = build_engine(pg_url)
    upgrade(engine, "0001_initial")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO checks (server, actor, source, started_at, finished_at, duration_ms, status,"
                " findings, snapshot) VALUES ('vpn01', 'U1', 'cli', '2026-11-01', '2026-11-01', 1, 'healthy',"
                " '[]', CAST(:snap AS JSON))"
            ),
            {"snap": json.dumps(sample_snapshot())},
        )
    engine.dispose()
    with Repository(pg_url) as repo:
        check = repo.get_check(1)
        assert check.snapshot_hash is not None
        assert repo.get_snapshot(check.snapshot_hash) is not None
