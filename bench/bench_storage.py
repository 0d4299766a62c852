"""Storage benchmark: query latency on a large history and the size saved by snapshot dedup.

    PYTHONPATH=. python bench/bench_storage.py [--checks 1000000] [--servers 200] [--runs 9]

Not a test: it prints a table. Setup (bulk-loading the checks) uses Core executemany and is not timed
as part of the results.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Engine, Integer, MetaData, String, Table, insert

from storage import Repository
from storage.engine import build_engine
from storage.migrate import upgrade
from storage.models import CheckRow, SnapshotRow
from storage.snapshots import encode_snapshot

START = datetime(2024, 1, 1, tzinfo=UTC)
INTERVAL = timedelta(hours=6)
# A server's configuration (certificates, bindings) changes about every 90 days (renewals, fixes...);
# between changes, only collected_at and vpn_connections differ from one probe to the next.
STATE_PERIOD = 360  # checks of one server (6 h apart) between configuration changes
FINDING = {"id": "IIS_HTTPS_BINDING", "severity": "critical", "title": "IIS has an https binding on 443",
           "detail": "IIS binds another certificate on the SSTP port", "evidence": {"site": "Default Web Site"},
           "fixable": True}

# The checks table as revision 1 had it: the snapshot inline with every check (no dedup, no compression).
CHECKS_V1 = Table("checks", MetaData(), Column("id", Integer, primary_key=True), Column("server", String),
                  Column("actor", String), Column("source", String), Column("started_at", DateTime),
                  Column("finished_at", DateTime), Column("duration_ms", Integer), Column("status", String),
                  Column("findings", JSON), Column("snapshot", JSON))


def _der(seed: str, size: int = 1500) -> str:
    out, block = b"", seed.encode()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return base64.b64encode(out[:size]).decode()


def snapshot(server: str, state: int, moment: datetime, users: int) -> dict[str, Any]:
    """A realistic snapshot v1 (five certificates of ~1.5 KB DER each); `state` picks the configuration."""
    sstp = hashlib.sha1(f"{server}-{state}".encode()).hexdigest().upper()
    return {
        "schema": "sstp-bot/snapshot/v1",
        "collected_at": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": {"computer_name": server.upper(), "os_caption": "Microsoft Windows Server 2022 Standard",
                 "os_build": "20348", "ps_version": "5.1.20348.2849", "is_admin": True},
        "services": {"RemoteAccess": {"status": "Running", "start_type": "Automatic"},
                     "SstpSvc": {"status": "Running", "start_type": "Manual"},
                     "W3SVC": {"status": "Running", "start_type": "Automatic"}, "WAS": None},
        "sstp": {"sha256_hash": hashlib.sha256(sstp.encode()).hexdigest().upper(), "sha1_hash": sstp,
                 "use_https": True, "is_hash_configured_by_admin": True, "listener_port": 443,
                 "remote_access": {"vpn_status": "Installed", "thumbprint": sstp}},
        "http_sys": {"ip_bindings": [{"endpoint": "0.0.0.0:443", "cert_hash": sstp,
                                      "app_id": "{ba195980-cd49-458b-9e23-c84ee0adcd75}", "store": "MY",
                                      "ctl_store": None}],
                     "sni_bindings": [],
                     "url_reservations": [{"url": "https://+:443/sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/",
                                           "sddl": "D:(A;;GA;;;S-1-5-80-3139157870-2983391045)"}]},
        "iis": {"installed": True, "https_bindings": [{"site": "Default Web Site", "binding_information": "*:443:",
                                                       "cert_hash": sstp, "ssl_flags": 0}]},
        "listeners": [{"local_address": "0.0.0.0", "port": 443, "pid": 4, "process": "System"}],
        "certificates": [{"thumbprint": hashlib.sha1(f"{server}-{state}-{i}".encode()).hexdigest().upper(),
                          "has_private_key": True, "friendly_name": f"cert {i}",
                          "der": _der(f"{server}-{state}-{i}")} for i in range(5)],
        "vpn_connections": users,
        "events": [{"provider": "Microsoft-Windows-RasSstp", "id": 18, "time": "2024-01-01T00:00:00Z",
                    "message": "The SSTP certificate could not be bound."}] if state % 2 else [],
        "probe_errors": [],
    }


def server_names(count: int) -> list[str]:
    return [f"vpn{n:03d}" for n in range(count)]


def checks(total: int, servers: list[str]) -> Iterator[tuple[str, int, datetime]]:
    """(server, configuration state, finished_at) for `total` checks, round-robin over the fleet."""
    offsets = {server: int(hashlib.sha256(server.encode()).hexdigest(), 16) % STATE_PERIOD for server in servers}
    for n in range(total):
        server = servers[n % len(servers)]
        round_ = n // len(servers)
        state = (round_ + offsets[server]) // STATE_PERIOD
        yield server, state, START + round_ * INTERVAL + timedelta(seconds=n % len(servers))


def bulk_load(engine: Engine, total: int, servers: list[str]) -> float:
    """Insert `total` checks (and their deduplicated snapshots) with Core executemany; returns seconds."""
    began = time.perf_counter()
    hashes: dict[tuple[str, int], str] = {}
    snapshot_rows: list[dict[str, Any]] = []
    batch: list[dict[str, Any]] = []
    rng = random.Random(7)
    for server, state, finished in checks(total, servers):
        if (server, state) not in hashes:
            digest, body, raw = encode_snapshot(snapshot(server, state, finished, 0))
            hashes[server, state] = digest
            snapshot_rows.append({"hash": digest, "body": body, "raw_size": raw, "created_at": finished})
        healthy = state % 2 == 0
        batch.append({
            "server": server, "actor": "schedule", "source": "schedule",
            "started_at": finished - timedelta(seconds=3), "finished_at": finished,
            "duration_ms": 2500 + rng.randrange(1000), "status": "healthy" if healthy else "unhealthy",
            "error_kind": None, "error_message": None, "findings": [] if healthy else [FINDING],
            "snapshot_hash": hashes[server, state],
        })
        if len(batch) == 50_000:
            # foreign key on snapshot_hash: load snapshots first
            with engine.begin() as conn:
                if snapshot_rows:
                    conn.execute(insert(SnapshotRow), snapshot_rows)
                    snapshot_rows.clear()
                conn.execute(insert(CheckRow), batch)
            batch.clear()
    with engine.begin() as conn:
        if snapshot_rows:
            conn.execute(insert(SnapshotRow), snapshot_rows)
        if batch:
            conn.execute(insert(CheckRow), batch)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - began


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float, float]:
    """(first, median, max) in milliseconds."""
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1000)
    return samples[0], statistics.median(samples[1:] or samples), max(samples)


def file_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def size_comparison(workdir: Path, total: int, servers: list[str]) -> tuple[int, int, float]:
    """Database size for `total` checks: head schema (dedup + zlib, through Repository.record_check)
    versus revision 1 (the snapshot inline with each check). Returns (with, without, seconds per check)."""
    dedup_path, inline_path = workdir / "dedup.db", workdir / "inline.db"
    rng = random.Random(11)
    plan = list(checks(total, servers))
    began = time.perf_counter()
    with Repository(f"sqlite:///{dedup_path}") as repo:
        for server, state, finished in plan:
            repo.record_check(server=server, actor="schedule", source="schedule",
                              started_at=finished - timedelta(seconds=3), finished_at=finished,
                              status="healthy" if state % 2 == 0 else "unhealthy",
                              findings=[] if state % 2 == 0 else [FINDING],
                              snapshot=snapshot(server, state, finished, rng.randrange(200)))
    per_check = (time.perf_counter() - began) / total
    engine = build_engine(f"sqlite:///{inline_path}")
    upgrade(engine, "0001_initial")
    rng = random.Random(11)
    with engine.begin() as conn:
        conn.execute(insert(CHECKS_V1), [
            {"server": server, "actor": "schedule", "source": "schedule",
             "started_at": (finished - timedelta(seconds=3)).replace(tzinfo=None),
             "finished_at": finished.replace(tzinfo=None), "duration_ms": 3000,
             "status": "healthy" if state % 2 == 0 else "unhealthy",
             "findings": [] if state % 2 == 0 else [FINDING],
             "snapshot": snapshot(server, state, finished, rng.randrange(200))}
            for server, state, finished in plan
        ])
    engine.dispose()
    return file_size(dedup_path), file_size(inline_path), per_check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--checks", type=int, default=1_000_000, help="checks to load (default 1,000,000)")
    parser.add_argument("--servers", type=int, default=200)
    parser.add_argument("--runs", type=int, default=9, help="timed runs per query (median reported)")
    parser.add_argument("--size-checks", type=int, default=10_000, help="checks for the size comparison")
    args = parser.parse_args(argv)
    servers = server_names(args.servers)
    with tempfile.TemporaryDirectory(prefix="sstp-bot-bench-") as tmp:
        workdir = Path(tmp)
        big = workdir / "big.db"
        url = f"sqlite:///{big}"
        Repository(url).close()  # schema at head
        engine = build_engine(url)
        load_s = bulk_load(engine, args.checks, servers)
        engine.dispose()
        with Repository(url) as repo:
            one = servers[len(servers) // 3]
            assert len(repo.history(one, limit=20)) == 20
            latest = repo.latest_checks()
            assert len(latest) == len(servers), len(latest)
            history = timed(lambda: repo.history(one, limit=20), args.runs)
            fleet = timed(repo.latest_checks, args.runs)
            everyone = timed(lambda: repo.history(limit=20), args.runs)
        big_size = file_size(big)
        with_dedup, without_dedup, per_check = size_comparison(workdir, args.size_checks, servers)

    rows = [
        ("checks loaded", f"{args.checks:,} over {args.servers} servers", f"setup {load_s:.1f} s, "
         f"{big_size / 1e6:.0f} MB"),
        ("history of one server (limit 20)", f"median {history[1]:.2f} ms", f"first {history[0]:.2f}, "
         f"max {history[2]:.2f} ms; target < 20 ms"),
        ("fleet status (latest per server)", f"median {fleet[1]:.2f} ms", f"first {fleet[0]:.2f}, "
         f"max {fleet[2]:.2f} ms; target < 20 ms"),
        ("history of the fleet (limit 20)", f"median {everyone[1]:.2f} ms", f"first {everyone[0]:.2f}, "
         f"max {everyone[2]:.2f} ms"),
        (f"size per {args.size_checks:,} checks, dedup+zlib", f"{with_dedup / 1e6:.2f} MB",
         f"record_check {per_check * 1000:.2f} ms each"),
        (f"size per {args.size_checks:,} checks, inline (rev 1)", f"{without_dedup / 1e6:.2f} MB",
         f"{without_dedup / max(with_dedup, 1):.1f}x larger; target >= 10x"),
    ]
    width = max(len(r[0]) for r in rows)
    mid = max(len(r[1]) for r in rows)
    print(f"{'measure':<{width}}  {'result':<{mid}}  notes")
    print(f"{'-' * width}  {'-' * mid}  {'-' * 40}")
    for name, result, note in rows:
        print(f"{name:<{width}}  {result:<{mid}}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
