"""With several bot processes on one database, exactly one runs each scheduled sweep (DESIGN 13).

Two sweep runners, each with its own engine, service and identity (as two `serve` processes have),
race for the same slots on one SQLite file and, when SSTP_BOT_TEST_POSTGRES_URL is set (always in
CI: `.ci/run` starts a PostgreSQL server), on one PostgreSQL database.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from bot.config import ScheduleConfig, load_config
from bot.operations import PeriodicJobs, SweepReport
from bot.service import build_service
from commands.lab import Lab
from storage import Repository
from storage.operations import LeaseStore

PG_URL = os.environ.get("SSTP_BOT_TEST_POSTGRES_URL", "")
T0 = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)


def _own_database(url: str) -> str:
    """A database of our own beside the one the URL names (created once): tests in parallel workers
    (pytest-xdist) wipe `SSTP_BOT_TEST_POSTGRES_URL`'s database for their own tests."""
    base = make_url(url)
    name = f"{base.database}_operations"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def _wipe_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
        conn.execute(text("DROP FUNCTION IF EXISTS sstp_bot_audit_append_only() CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    if not PG_URL:
        pytest.skip("SSTP_BOT_TEST_POSTGRES_URL is not set")
    url = _own_database(PG_URL)
    _wipe_postgres(url)
    yield url


def test_a_slot_is_claimed_once(db_url: str) -> None:
    with Repository(db_url) as repo:
        store = LeaseStore.for_repository(repo)
        ttl = timedelta(minutes=5)
        assert store.claim("sweep", 10, "a", T0, ttl)
        assert not store.claim("sweep", 10, "b", T0, ttl)  # taken
        assert not store.claim("sweep", 11, "b", T0, ttl)  # a's lease is live: no overlap
        store.release("sweep", "a")
        assert store.claim("sweep", 11, "b", T0, ttl)
        assert not store.claim("sweep", 9, "a", T0 + ttl * 2, ttl)  # never back in time
        # A holder that died keeps its lease only until it runs out.
        assert not store.claim("sweep", 12, "a", T0 + timedelta(minutes=4), ttl)
        assert store.claim("sweep", 12, "a", T0 + timedelta(minutes=6), ttl)
        assert store.last_slot("sweep") == 12
        # A long sweep renews its lease: nobody starts the next slot meanwhile.
        assert store.renew("sweep", "a", T0 + timedelta(minutes=10), ttl)
        assert not store.renew("sweep", "b", T0 + timedelta(minutes=10), ttl)
        assert not store.claim("sweep", 13, "b", T0 + timedelta(minutes=13), ttl)
        assert store.claim("sweep", 13, "b", T0 + timedelta(minutes=15), ttl)


@pytest.mark.slow
def test_two_bot_processes_run_each_sweep_once(db_url: str, tmp_path: Path) -> None:
    with Lab(["healthy"]) as lab:
        config = load_config(lab.write_config(tmp_path / "lab.toml", database_url=db_url), {})
        config = replace(config, schedule=ScheduleConfig(sweep_every_minutes=5))
        ran: list[tuple[str, int]] = []
        lock = threading.Lock()
        runners = []
        for name in ("bot-a", "bot-b"):
            service = build_service(config, {}, lambda: datetime.now(UTC))

            def record(report: SweepReport, name: str = name) -> None:
                with lock:
                    ran.append((name, len(report.outcomes)))

            runners.append((service, PeriodicJobs(service, on_sweep=record, holder=f"host=test pid={name}")))
        try:
            slots = 4
            for n in range(slots):
                now = T0 + timedelta(minutes=5 * n)
                barrier = threading.Barrier(2)

                def race(jobs: PeriodicJobs, now: datetime = now, barrier: threading.Barrier = barrier) -> None:
                    barrier.wait()
                    jobs.run_due(now)

                threads = [threading.Thread(target=race, args=(jobs,)) for _, jobs in runners]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(60)
            assert len(ran) == slots, ran
            assert all(count == 1 for _, count in ran)
            history = runners[0][0].history("vpn-healthy", limit=50)
            assert sum(1 for entry in history if entry.kind == "check") == slots
        finally:
            for service, _ in runners:
                service.close()


_RUNNER = """
import json, sys, time
from datetime import UTC, datetime, timedelta
from dataclasses import replace
from bot.config import ScheduleConfig, load_config
from bot.operations import PeriodicJobs
from bot.service import build_service

config_path, start, slots = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
config = load_config(config_path, {})
config = replace(config, schedule=ScheduleConfig(sweep_every_minutes=5))
service = build_service(config, {}, lambda: datetime.now(UTC))
jobs = PeriodicJobs(service)  # the holder is this process's identity, as in serve
t0 = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
for n in range(slots):
    time.sleep(max(0.0, start + 1.5 * n - time.time()))
    print(json.dumps({"slot": n, "ran": jobs.run_due(t0 + timedelta(minutes=5 * n))}), flush=True)
service.close()
"""


@pytest.mark.slow
def test_two_serve_processes_run_each_sweep_once(db_url: str, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys
    import time

    repo_root = Path(__file__).resolve().parents[2]
    with Lab(["healthy"]) as lab:
        config_path = lab.write_config(tmp_path / "lab.toml", database_url=db_url)
        with Repository(db_url):  # migrate once, before the race
            pass
        slots = 3
        start = time.time() + 3.0  # both processes started and connected by then
        env = {**os.environ, "PYTHONPATH": str(repo_root)}
        children = [
            subprocess.Popen([sys.executable, "-c", _RUNNER, str(config_path), str(start), str(slots)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)
        ]
        outputs = [child.communicate(timeout=60) for child in children]
        for child, (_, err) in zip(children, outputs, strict=True):
            assert child.returncode == 0, err[-2000:]
        ran: list[int] = []
        for out, _ in outputs:
            for line in out.splitlines():
                entry = json.loads(line)
                if "sweep" in entry["ran"]:
                    ran.append(entry["slot"])
        assert sorted(ran) == list(range(slots))  # each slot swept once, by one of the two
        with Repository(db_url) as repo:
            checks = [e for e in repo.history("vpn-healthy", 50) if e.kind == "check"]
            assert len(checks) == slots


def test_a_running_job_renews_its_lease(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time
    from types import SimpleNamespace

    import bot.operations as operations
    from bot.config import Config

    monkeypatch.setattr(operations, "LEASE_TTL", timedelta(seconds=0.4))
    with Repository(f"sqlite:///{tmp_path / 'renew.db'}") as repo:
        jobs = PeriodicJobs(SimpleNamespace(config=Config(), repo=repo), holder="a")  # type: ignore[arg-type]
        store = jobs.store
        assert store.claim("sweep", 1, "a", T0, operations.LEASE_TTL)
        with jobs._holding("sweep", T0):
            time.sleep(0.6)  # past the first expiry: only a renewal keeps "b" out
            assert not store.claim("sweep", 2, "b", T0 + timedelta(seconds=0.5), timedelta(minutes=1))
        assert store.claim("sweep", 2, "b", T0 + timedelta(seconds=0.5), timedelta(minutes=1))  # released
