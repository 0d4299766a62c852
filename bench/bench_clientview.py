"""Benchmark the client view's cost: wall time of a lab check with `client_view` on and off, in one
run, as a ratio (DESIGN 11: the view runs beside the probe, so the ratio should be about 1.0).
Checks alternate on/off so that machine noise hits both alike; medians are compared. Not a test.

The ratio is printed for each lab latency given (seconds added to every WS-Man answer). With no
latency the lab is CPU-bound, and the lab's TLS server (in the same process as the bot, under one
GIL) charges its handshake CPU to the check: that is the worst case, not what a real server costs
the bot. A little latency, as any network has, shows the view hidden behind the probe.

    PYTHONPATH=. python bench/bench_clientview.py [--rounds 15] [--latency 0 0.02] [--scenario iis-binding]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bot.config import load_config
from bot.service import Actor, build_service
from commands.lab.lab import Lab


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15, help="checks with the view on, and as many off")
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.02],
                        help="seconds the lab adds to every WS-Man answer (one run per value)")
    parser.add_argument("--scenario", default="iis-binding")
    args = parser.parse_args()
    print(f"scenario {args.scenario}, {args.rounds} checks each way (medians)")
    print(f"{'lab latency':>12} {'view on':>10} {'view off':>10} {'ratio on/off':>13}")
    for latency in args.latency:
        on_ms, off_ms = measure(args.scenario, args.rounds, latency)
        print(f"{latency:>10g} s {on_ms:>7.1f} ms {off_ms:>7.1f} ms {on_ms / off_ms:>13.2f}")
    return 0


def measure(scenario: str, rounds: int, latency: float) -> tuple[float, float]:
    """Median wall time (ms) of a check with the client view on, and off."""
    actor = Actor(id="cli:bench", source="cli")
    timings: dict[bool, list[float]] = {True: [], False: []}
    with Lab([scenario], latency=latency) as lab, tempfile.TemporaryDirectory() as folder:
        path = lab.write_config(Path(folder) / "lab.toml", database_url=f"sqlite:///{Path(folder) / 'bench.db'}")
        config = load_config(path, {})
        [name] = list(config.servers)
        servers = {True: replace(config.servers[name], client_view=True),
                   False: replace(config.servers[name], client_view=False)}
        service = build_service(config, {}, lambda: datetime.now(UTC))
        try:
            for on in (True, False):  # warm-up: imports, NTLM user file, TLS contexts, SQLite
                service.check([servers[on]], actor)
            for _ in range(rounds):
                for on in (True, False):
                    started = time.perf_counter()
                    [outcome] = service.check([servers[on]], actor)
                    timings[on].append(time.perf_counter() - started)
                    snapshot = outcome.result.snapshot or {}
                    assert (snapshot.get("client_view") is not None) is on, "the view must be on exactly when asked"
        finally:
            service.close()

    return statistics.median(timings[True]) * 1000, statistics.median(timings[False]) * 1000


if __name__ == "__main__":
    raise SystemExit(main())
