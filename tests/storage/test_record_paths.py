"""Recording a check writes the same rows whichever way the snapshot is stored: the one-statement
upsert (SQLite 3.24+, PostgreSQL) or the SELECT then INSERT/UPDATE an older SQLite needs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from storage import PlanState, Repository
from storage.snapshots import snapshot_hash

from .conftest import STEPS, TTL, FakeClock, add_check, sample_snapshot


def _scenario(repo: Repository, clock: FakeClock) -> list[Any]:
    """Checks, a plan superseded by a newer check, a pruned snapshot seen again; what the calls returned."""
    old, new = sample_snapshot(iis_cert="CD" * 20), sample_snapshot()
    returned: list[Any] = []
    first = add_check(repo, clock, snapshot=old)
    plan_id = repo.create_plan(check_id=first, server="vpn01", steps=STEPS, fingerprint="F" * 64,
                               requester="U0AAAA1", source="slack", ttl=TTL)
    clock.advance(minutes=1)
    returned.append(repo.record_check_superseding(
        server="vpn01", actor="U0AAAA1", source="cli", started_at=clock(), finished_at=clock(),
        status="healthy", findings=[], snapshot=new,
    ))
    returned.append(repo.get_plan(plan_id).state)
    add_check(repo, clock, "vpn02", snapshot=new)  # the same content: stored once
    clock.advance(days=40)
    returned.append(repo.prune_snapshots(30))  # both lose their bodies
    returned.append(repo.get_snapshot(snapshot_hash(old)))
    add_check(repo, clock, snapshot=old)  # seen again: the body is stored again
    returned.append(repo.get_snapshot(snapshot_hash(old)) is not None)
    return returned


def _rows(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    repo = Repository(db_url)
    try:
        with repo._engine.connect() as conn:
            return {
                table: [tuple(row) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1"))]
                for table in ("snapshots", "checks", "plans", "audit")
            }
    finally:
        repo.close()


def test_the_snapshot_upsert_and_the_old_sqlite_path_store_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results: list[list[Any]] = []
    tables: list[dict[str, list[tuple[Any, ...]]]] = []
    for name, old_sqlite in (("upsert", False), ("select-insert", True)):
        url = f"sqlite:///{tmp_path}/{name}.db"
        clock = FakeClock()
        repo = Repository(url, clock=clock)
        if old_sqlite:  # SQLite before 3.24 has no INSERT ... ON CONFLICT
            monkeypatch.setattr(repo._engine.dialect, "server_version_info", (3, 23, 1))
        results.append(_scenario(repo, clock))
        repo.close()
        monkeypatch.undo()
        tables.append(_rows(url))
    assert results[0] == results[1]
    (check_id, superseded), state, pruned, gone, back = results[0]
    assert [p.state for p in superseded] == [PlanState.SUPERSEDED.value] and state == PlanState.SUPERSEDED.value
    assert superseded[0].finished_at is not None and check_id == 2
    assert (pruned, gone, back) == (2, None, True)
    assert tables[0] == tables[1]
    snapshots = {row[0]: row for row in tables[0]["snapshots"]}
    old_row = snapshots[snapshot_hash(sample_snapshot(iis_cert="CD" * 20))]
    new_row = snapshots[snapshot_hash(sample_snapshot())]
    assert old_row[1] is not None and old_row[4] is None  # stored again, no longer marked pruned
    assert new_row[1] is None and new_row[4] is not None
    actions = [(row[3], row[5]) for row in tables[0]["audit"]]
    assert actions == [("propose", 1), ("supersede", 1)]


def test_a_check_that_supersedes_nothing_returns_no_plans(repo: Repository, clock: FakeClock) -> None:
    check_id, superseded = repo.record_check_superseding(
        server="vpn09", actor="U0AAAA1", source="cli", started_at=clock(),
        finished_at=clock() + timedelta(seconds=1),
        status="unhealthy", findings=[{"id": "X", "detail": "password=hunter2"}], snapshot=sample_snapshot(),
    )
    assert superseded == []
    record = repo.get_check(check_id)
    assert record.duration_ms == 1000 and record.findings == [{"id": "X", "detail": "password=[REDACTED]"}]
