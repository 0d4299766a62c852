"""Benchmark sweeps (DESIGN 13): WS-Man requests of a warm check, a 100-server sweep with warm pools
against cold connections (at 50 ms per request), and the client's CPU time per check, so the cost of
a 1,000-server fleet can be projected. One command, prints a table, ratios from one run; not a test.

    PYTHONPATH=. python bench/bench_sweep.py [--servers 100] [--latency 0.05] [--workers 25]

The sweeps run the real use case (`bot.operations.sweep`: probe, diagnose, record in SQLite) against
lab servers in another process, so the benchmark measures the bot's side (the lab must not share its
interpreter lock); both still share this machine's cores.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bot.config import Config, load_config
from bot.operations import sweep
from bot.service import Actor, Service
from commands.engine import evaluate
from commands.lab.lab import LAB_PASSWORD, Lab
from commands.pools import WarmPools
from commands.psrp import RemoteSession
from commands.server import ServerConfig
from storage import Repository

ACTOR = Actor(id="bench", source="cli")

_LAB_PROCESS = """
import sys
from commands.lab.lab import Lab
servers, latency, path = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
extra = [(f"srv{i:03d}", "healthy" if i % 3 else "iis-binding") for i in range(servers)]
with Lab(["healthy"], latency=latency, extra_servers=extra) as lab:
    lab.write_config(path)
    print("ready", flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
"""


@contextlib.contextmanager
def lab_process(servers: int, latency: float) -> Iterator[Config]:
    """Lab servers in another process (real servers do their work elsewhere, and the lab must not
    share the benchmark's interpreter lock); yields their inventory."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lab.toml"
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        child = subprocess.Popen([sys.executable, "-c", _LAB_PROCESS, str(servers), str(latency), str(path)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready", "the lab did not start"
            config = load_config(path, {})
            # Only the benchmark's servers (the lab adds its default one).
            yield replace(config, servers={n: c for n, c in config.servers.items() if n.startswith("srv")})
        finally:
            assert child.stdin is not None
            child.stdin.close()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def warm_check_requests() -> list[tuple[str, str]]:
    with Lab(["healthy"]) as lab:
        cfg = replace(lab.server_config("vpn-healthy"), keep_alive_minutes=5)
        pools = WarmPools()
        try:
            lab.clear_logs()
            with pools(cfg, LAB_PASSWORD) as session:
                session.probe()
            cold = Counter(r.action for r in lab.servers["vpn-healthy"].requests)
            lab.clear_logs()
            with pools(cfg, LAB_PASSWORD) as session:
                session.probe()
            warm = Counter(r.action for r in lab.servers["vpn-healthy"].requests)
        finally:
            pools.close()
    return [
        ("cold check: requests (auth = NTLM legs; Delete comes when the pool closes)", f"{sum(cold.values())}  {dict(sorted(cold.items()))}"),
        ("warm check: requests", f"{sum(warm.values())}  {dict(sorted(warm.items()))}"),
    ]


def _service(servers: dict[str, ServerConfig], db: Path, workers: int, factory: object) -> Service:
    config = Config(servers=servers)
    return Service(config, Repository(f"sqlite:///{db}"), environ={},
                   clock=lambda: datetime.now(UTC), session_factory=factory,  # type: ignore[arg-type]
                   max_workers=workers)


def sweeps(servers: int, latency: float, workers: int) -> list[tuple[str, str]]:
    with lab_process(servers, latency) as lab_config, tempfile.TemporaryDirectory() as tmp:
        inventory = {n: replace(c, keep_alive_minutes=5) for n, c in lab_config.servers.items()}
        cold_service = _service(inventory, Path(tmp) / "cold.db", workers, RemoteSession)
        t = time.perf_counter()
        cold = sweep(cold_service, ACTOR)
        cold_s = time.perf_counter() - t
        cold_service.close()

        pools = WarmPools()
        warm_service = _service(inventory, Path(tmp) / "warm.db", workers, pools)
        sweep(warm_service, ACTOR)  # opens the pools
        t = time.perf_counter()
        warm = sweep(warm_service, ACTOR)
        warm_s = time.perf_counter() - t
        reopened = pools.reopened
        pools.close()
        warm_service.close()
    errors = sum(r.status == "error" for r in cold.results + warm.results)
    ratio = cold_s / warm_s
    return [
        (f"cold sweep, {servers} servers, {latency * 1000:.0f} ms/request, {workers} workers",
         f"{cold_s:.2f} s" + ("  (under 2 s)" if cold_s < 2 else "  (over the 2 s goal)")),
        ("warm sweep, same fleet (pools opened by a first sweep)", f"{warm_s:.2f} s  ({reopened} pool(s) reopened)"),
        ("warm vs cold", f"{ratio:.1f}x faster" + ("  (>= 3x)" if ratio >= 3 else "  (under the 3x goal)")),
        ("servers that could not be checked", str(errors)),
    ]


def cpu_per_check(checks: int) -> list[tuple[str, str]]:
    """The bot's CPU seconds per check (probe and diagnosis), cold and warm, lab in another process."""
    with lab_process(1, 0.0) as lab_config:
        server = replace(next(iter(lab_config.servers.values())), keep_alive_minutes=5)
        password = server.password({})
        t = time.process_time()
        for _ in range(checks):
            with RemoteSession(server, password) as session:
                evaluate(session.probe(), server, datetime.now(UTC))
        cold = (time.process_time() - t) / checks
        pools = WarmPools()
        with pools(server, password) as session:
            session.probe()
        t = time.process_time()
        for _ in range(checks):
            with pools(server, password) as session:
                evaluate(session.probe(), server, datetime.now(UTC))
        warm = (time.process_time() - t) / checks
        pools.close()
    return [
        ("client CPU per check, cold (connect, NTLM, Create, probe, Delete, diagnose)", f"{cold * 1000:.1f} ms"),
        ("client CPU per check, warm pool", f"{warm * 1000:.1f} ms"),
        ("projected client CPU for a 1,000-server sweep", f"cold {cold * 1000:.1f} s, warm {warm * 1000:.1f} s "
         "(recording in the database not included)"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every HTTP request")
    parser.add_argument("--workers", type=int, default=25, help="sweep concurrency bound")
    parser.add_argument("--cpu-checks", type=int, default=20, help="checks timed for the CPU figures")
    args = parser.parse_args(argv)
    # The sweeps are CPU-bound on a small machine: say what it was doing, so figures can be compared.
    machine = [("machine", f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")]
    rows = machine + warm_check_requests() + sweeps(args.servers, args.latency, args.workers) + cpu_per_check(args.cpu_checks)
    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 40}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
