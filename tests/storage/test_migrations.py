"""Alembic migrations: from nothing, from revision 1 with data in it, and refusing an old database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from commands.errors import ConfigError
from storage import PlanState, Repository, head_revision
from storage.engine import build_engine
from storage.migrate import current_revision, downgrade, upgrade
from storage.models import Base
from storage.snapshots import snapshot_hash

from .conftest import FakeClock, sample_snapshot


def test_empty_database_is_created_at_head(db_url: str) -> None:
    with Repository(db_url) as repo:
        assert repo.latest_checks() == []
    engine = build_engine(db_url)
    assert current_revision(engine) == head_revision()
    assert {"checks", "plans", "audit", "snapshots", "alembic_version"} <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    engine.dispose()


def test_migrations_build_exactly_the_orm_schema(db_url: str) -> None:
    engine = build_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


@pytest.mark.parametrize("revision", ["0001_initial", "0002_snapshots"])
def test_every_downgrade_then_upgrade_builds_the_orm_schema(db_url: str, revision: str) -> None:
    engine = build_engine(db_url)
    upgrade(engine)
    downgrade(engine, revision)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def _at_revision_1_with_data(db_url: str) -> None:
    engine = build_engine(db_url)
    upgrade(engine, "0001_initial")
    assert current_revision(engine) == "0001_initial"
    same_a = sample_snapshot(collected_at="2026-11-01T00:00:00Z", vpn_connections=3)
    same_b = sample_snapshot(collected_at="2026-11-01T06:00:00Z", vpn_connections=40)
    different = sample_snapshot(iis_cert="CD" * 20)
    rows = [
        (1, "vpn01", "2026-11-01 00:00:00.000000", json.dumps(same_a), "unhealthy"),
        (2, "vpn01", "2026-11-01 06:00:00.000000", json.dumps(same_b), "unhealthy"),
        (3, "vpn02", "2026-11-01 06:00:01.000000", json.dumps(different), "unhealthy"),
        (4, "vpn03", "2026-11-01 06:00:02.000000", None, "error"),
    ]
    with engine.begin() as conn:
        for check_id, server, at, snap, status in rows:
            conn.execute(
                text(
                    "INSERT INTO checks (id, server, actor, source, started_at, finished_at, duration_ms, status,"
                    " error_kind, error_message, findings, snapshot) VALUES (:id, :server, 'U0AAAA1', 'slack',"
                    " :at, :at, 1500, :status, NULL, NULL, :findings, :snapshot)"
                ),
                {"id": check_id, "server": server, "at": at, "status": status, "snapshot": snap,
                 "findings": json.dumps([{"id": "SSTP_HASH_MISMATCH", "severity": "critical"}])},
            )
        conn.execute(
            text(
                "INSERT INTO plans (id, check_id, server, state, steps, fingerprint, requester, approver, source,"
                " created_at, expires_at, decided_at, finished_at, channel, message_ts, step_results) VALUES"
                " (7, 2, 'vpn01', 'PROPOSED', '[{\"action\": \"restart_iis\"}]', 'abc', 'U0AAAA1', NULL, 'slack',"
                " '2026-11-01 06:00:00.000000', '2099-01-01 00:00:00.000000', NULL, NULL, 'C0123', '1.2', '[]')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO audit (at, actor, action, server, plan_id, outcome, details) VALUES"
                " ('2026-11-01 06:00:00.000000', 'U0AAAA1', 'propose', 'vpn01', 7, 'ok', '{\"check_id\": 2}')"
            )
        )
    engine.dispose()


def test_upgrade_from_revision_1_with_data(db_url: str) -> None:
    _at_revision_1_with_data(db_url)
    clock = FakeClock(datetime(2026, 11, 2, tzinfo=UTC))
    with Repository(db_url, clock=clock) as repo:  # auto_upgrade
        first, second, third, errored = (repo.get_check(i) for i in (1, 2, 3, 4))
        assert first.snapshot_hash == second.snapshot_hash == snapshot_hash(sample_snapshot())
        assert third.snapshot_hash not in (None, first.snapshot_hash)
        assert errored.snapshot_hash is None
        assert first.findings == [{"id": "SSTP_HASH_MISMATCH", "severity": "critical"}]
        assert second.plan_id == 7 and first.plan_id is None
        assert first.started_at == datetime(2026, 11, 1, tzinfo=UTC)
        stored = repo.get_snapshot(first.snapshot_hash or "")
        assert stored is not None and stored["certificates"] == sample_snapshot()["certificates"]
        assert "collected_at" not in stored
        assert [c.server for c in repo.latest_checks()] == ["vpn01", "vpn02", "vpn03"]
        plan = repo.transition(7, PlanState.PROPOSED, PlanState.APPROVED, actor="U0BBBB2")
        assert (plan.state, plan.channel, plan.message_ts) == ("APPROVED", "C0123", "1.2")
        assert [(e.action, e.outcome) for e in repo.plan_audit(7)] == [("propose", "ok"), ("approve", "ok")]
    engine = build_engine(db_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM snapshots").scalar() == 2
        assert "snapshot" not in {c["name"] for c in inspect(conn).get_columns("checks")}
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    engine.dispose()


def test_downgrade_to_revision_1_and_back(db_url: str) -> None:
    _at_revision_1_with_data(db_url)
    engine = build_engine(db_url)
    upgrade(engine)
    downgrade(engine, "0001_initial")
    with engine.connect() as conn:
        snapshot = conn.exec_driver_sql("SELECT snapshot FROM checks WHERE id = 3").scalar_one()
        assert json.loads(snapshot)["iis"]["https_bindings"][0]["cert_hash"] == "CD" * 20
    result = upgrade(engine)
    assert (result.from_revision, result.to_revision) == ("0001_initial", head_revision())
    engine.dispose()


def test_old_database_without_auto_upgrade_is_refused(db_url: str) -> None:
    _at_revision_1_with_data(db_url)
    with pytest.raises(ConfigError, match="needs an upgrade: run `sstp-bot db upgrade`"):
        Repository(db_url, auto_upgrade=False)
    engine = build_engine(db_url)
    assert current_revision(engine) == "0001_initial"  # untouched
    engine.dispose()
    with Repository(db_url) as repo:
        repo.upgrade()
    Repository(db_url, auto_upgrade=False).close()


def test_empty_database_without_auto_upgrade_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\(empty\).*sstp-bot db upgrade"):
        Repository(f"sqlite:///{tmp_path}/new.db", auto_upgrade=False)


def test_database_from_a_newer_version_is_refused(db_url: str) -> None:
    Repository(db_url).close()
    engine = build_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099_future'")
    engine.dispose()
    for auto in (True, False):
        with pytest.raises(ConfigError, match="0099_future, which this version of sstp-bot does not know"):
            Repository(db_url, auto_upgrade=auto)


def test_in_memory_database(clock: FakeClock) -> None:
    with Repository("sqlite://", clock=clock) as repo:
        check_id = repo.record_check(server="vpn01", actor="U1", source="cli", started_at=clock(),
                                     finished_at=clock(), status="healthy", findings=[])
        assert repo.get_check(check_id).status == "healthy"


def _running_at_revision_2(db_url: str) -> tuple[int, int]:
    """A revision-2 database with a plan left RUNNING (by an older version) and a SUCCEEDED one."""
    engine = build_engine(db_url)
    upgrade(engine, "0002_snapshots")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO checks (id, server, actor, source, started_at, finished_at, duration_ms, status,"
                " error_kind, error_message, findings, snapshot_hash) VALUES (1, 'vpn01', 'U0AAAA1', 'slack',"
                " :at, :at, 1500, 'unhealthy', NULL, NULL, '[]', NULL)"
            ),
            {"at": "2026-11-25 12:00:00.000000"},
        )
        for plan_id, state in ((1, "SUCCEEDED"), (2, "RUNNING")):
            conn.execute(
                text(
                    "INSERT INTO plans (id, check_id, server, state, steps, fingerprint, requester, approver,"
                    " source, created_at, expires_at, decided_at, finished_at, channel, message_ts, step_results)"
                    " VALUES (:id, 1, 'vpn01', :state, '[]', 'abc', 'U0AAAA1', 'U0BBBB2', 'slack',"
                    " '2026-11-25 12:00:00.000000', '2026-11-25 12:15:00.000000', '2026-11-25 12:01:00.000000',"
                    " NULL, NULL, NULL, '[{\"action\": \"remove_iis_binding\", \"ok\": true}]')"
                ),
                {"id": plan_id, "state": state},
            )
    engine.dispose()
    return 1, 2


def test_upgrade_from_revision_2_with_a_running_plan(db_url: str) -> None:
    done, running = _running_at_revision_2(db_url)
    clock = FakeClock()
    with Repository(db_url, clock=clock) as repo:  # auto_upgrade to 0003
        assert repo.get_plan(done).runner is None and repo.get_plan(done).state == "SUCCEEDED"
        assert repo.get_plan(running).runner is None
        # A plan left RUNNING by an older version has no runner: nobody can vouch for it.
        assert repo.recover_interrupted(is_dead=lambda _runner: False) == [running]
        assert repo.get_plan(running).state == PlanState.INTERRUPTED
        last = repo.plan_audit(running)[-1]
        assert (last.action, last.actor, last.details["runner"]) == ("interrupt", "system", None)
        assert "0003_plan_runner" in last.details["why"]
    engine = build_engine(db_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


@pytest.mark.parametrize("old_sqlite", [False, True], ids=["drop-column", "table-rebuild"])
def test_downgrade_from_3_to_2_keeps_the_plans(
    db_url: str, old_sqlite: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, running = _running_at_revision_2(db_url)
    engine = build_engine(db_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE plans SET runner = 'host=elsewhere pid=7' WHERE id = 2")
    if old_sqlite:  # SQLite before 3.35 has no ALTER TABLE DROP COLUMN: the table is rebuilt
        monkeypatch.setattr(engine.dialect, "server_version_info", (3, 34, 1))
    downgrade(engine, "0002_snapshots")
    assert current_revision(engine) == "0002_snapshots"
    with engine.connect() as conn:
        assert "runner" not in {c["name"] for c in inspect(conn).get_columns("plans")}
        rows = conn.exec_driver_sql("SELECT id, state, step_results FROM plans ORDER BY id").fetchall()
        assert [(r[0], r[1]) for r in rows] == [(1, "SUCCEEDED"), (running, "RUNNING")]
        assert json.loads(rows[1][2]) == [{"action": "remove_iis_binding", "ok": True}]
        # The one-running-plan-per-server index survives (as a partial index).
        index_sql = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'uq_plans_one_running_per_server'"
        ).scalar_one()
        assert "UNIQUE" in index_sql.upper() and "RUNNING" in index_sql
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.exec_driver_sql("UPDATE plans SET state = 'RUNNING' WHERE id = 1")
    monkeypatch.undo()
    result = upgrade(engine)
    assert (result.from_revision, result.to_revision) == ("0002_snapshots", head_revision())
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()
