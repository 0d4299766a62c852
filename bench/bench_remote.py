"""Benchmark the remote path against the lab: WS-Man requests per check and per fix, fleet check
speed-up from bounded concurrency, and peak memory. One command, prints a table; not a test.

    PYTHONPATH=. python bench/bench_remote.py [--servers 100] [--latency 0.05] [--workers 25]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from collections import Counter
from datetime import UTC, datetime

from bench._common import print_table
from commands.engine import evaluate
from commands.executor import PlanExecutor, Timing
from commands.fleet import run_fleet
from commands.lab.lab import LAB_PASSWORD, Lab
from commands.psrp import RemoteSession
from commands.server import ServerConfig


def _counts(lab: Lab, name: str) -> Counter[str]:
    return Counter(r.action for r in lab.servers[name].requests)


def requests_per_check_and_fix() -> list[tuple[str, str]]:
    rows = []
    with Lab(["iis-binding"]) as lab:
        cfg = lab.server_config("vpn-iis")
        lab.clear_logs()
        with RemoteSession(cfg, LAB_PASSWORD) as session:
            snapshot = session.probe()
        c = _counts(lab, "vpn-iis")
        wsman = sum(n for a, n in c.items() if a != "auth")
        rows.append(("check (new connection): WS-Man requests", f"{wsman}  ({dict(sorted(c.items()))})"))
        rows.append(("check (new connection): + NTLM handshake", str(c["auth"])))
        lab.clear_logs()
        with RemoteSession(cfg, LAB_PASSWORD) as session:
            session.probe()
            lab.clear_logs()
            session.probe()
            warm = sum(_counts(lab, "vpn-iis").values())
        rows.append(("extra script on a warm session", str(warm)))
        result = evaluate(snapshot, cfg, datetime.now(UTC))
        assert result.plan is not None
        lab.clear_logs()
        # The executor as `fix` runs it (DESIGN 9 [2]): the sequences poll remoteaccess_state with the
        # production interval (0.25 s doubling to 2 s); the lab's RemoteAccess stops and starts at once.
        with RemoteSession(cfg, LAB_PASSWORD) as session:
            session.probe()
            error = PlanExecutor(session, timing=Timing(restart_timeout=cfg.restart_timeout_seconds)).run(
                [s.to_json() for s in result.plan.steps])
            session.probe()
        assert error is None, error
        c = _counts(lab, "vpn-iis")
        total = sum(c.values())
        rows.append(
            (
                f"fix of the classic ({len(result.plan.steps)} steps + probe + re-probe)",
                f"{total} requests, {c['Command']} pipelines  ({dict(sorted(c.items()))})",
            )
        )
    with Lab(["remoteaccess-slow-stop"]) as lab:
        cfg = lab.server_config("vpn-slow-stop")
        with RemoteSession(cfg, LAB_PASSWORD) as session:
            result = evaluate(session.probe(), cfg, datetime.now(UTC))
            assert result.plan is not None
            lab.clear_logs()
            t = time.perf_counter()
            error = PlanExecutor(session, timing=Timing(restart_timeout=cfg.restart_timeout_seconds)).run(
                [s.to_json() for s in result.plan.steps])
            took = time.perf_counter() - t
        assert error is None, error
        c = _counts(lab, "vpn-slow-stop")
        rows.append(
            (
                f"fix with a 1.2 s StopPending ({len(result.plan.steps)} steps)",
                f"{sum(c.values())} requests, {c['Command']} pipelines, {took:.1f} s",
            )
        )
    return rows


def fleet(servers: int, latency: float, workers: int) -> list[tuple[str, str]]:
    extra = [(f"vpn{i:03d}", "healthy" if i % 3 else "iis-binding") for i in range(servers)]
    rows = []
    t0 = time.perf_counter()
    with Lab(["healthy"], latency=latency, extra_servers=extra) as lab:
        start_s = time.perf_counter() - t0
        configs: list[ServerConfig] = [lab.server_config(n) for n in lab.servers if n.startswith("vpn0")]

        def check(cfg: ServerConfig) -> str:
            with RemoteSession(cfg, LAB_PASSWORD) as session:
                return str(session.probe()["host"]["computer_name"])

        t = time.perf_counter()
        results = run_fleet(configs, check, max_workers=workers)
        concurrent_s = time.perf_counter() - t
        errors = [r for r in results if isinstance(r, BaseException)]
        t = time.perf_counter()
        run_fleet(configs, check, max_workers=1)
        sequential_s = time.perf_counter() - t
        # Memory in a separate run: tracemalloc slows Python down and would distort the timings.
        tracemalloc.start()
        run_fleet(configs, check, max_workers=workers)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows += [
        (f"lab start ({servers} servers)", f"{start_s:.2f} s"),
        (f"fleet check, {servers} servers, {latency * 1000:.0f} ms/request, {workers} workers", f"{concurrent_s:.2f} s"),
        (f"fleet check, {servers} servers, one at a time", f"{sequential_s:.2f} s"),
        ("speed-up (bounded concurrency vs one at a time)", f"{sequential_s / concurrent_s:.1f}x"),
        ("errors in the concurrent run", str(len(errors))),
        ("peak traced memory during the concurrent check", f"{peak / 2**20:.1f} MiB (lab servers included)"),
        ("process max RSS", f"{rss_mb:.0f} MiB"),
    ]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every HTTP request")
    parser.add_argument("--workers", type=int, default=25, help="fleet concurrency bound")
    args = parser.parse_args(argv)
    rows = requests_per_check_and_fix() + fleet(args.servers, args.latency, args.workers)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
