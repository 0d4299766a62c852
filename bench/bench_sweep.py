"""Benchmark sweeps (DESIGN 13): WS-Man requests of a warm check, a 100-server sweep with warm pools
against cold connections (at 50 ms per request), and the client's CPU time per check, so the cost of
a 1,000-server fleet can be projected. One command, prints a table, ratios from one run; not a test.

    PYTHONPATH=. python bench/bench_sweep.py [--servers 100] [--latency 0.05] [--workers 25] [--transports https,http]

The sweeps run the real use case (`bot.operations.sweep`: probe, client view, diagnose, record in
SQLite) against lab servers in another process, so the benchmark measures the bot's side (the lab
must not share its interpreter lock); the lab adds the latency to every answer. `https` (the
deployment default, DESIGN 2/7: certificate validated against the lab's CA) is the headline row;
`http` is NTLM with message encryption. The bot's CPU is this process's CPU time during a sweep,
the lab's is its process's; both share this machine's cores, so the load average is printed too.
Over HTTPS it also builds the sweep up in layers and prints what the two goals (cold under 2 s, warm
at least 3x faster) leave for the work every check does whatever the pool (`budget`).
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

from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from bench._common import print_table
from bot.config import Config, load_config
from bot.operations import sweep
from bot.service import Actor, Service
from commands.lab.lab import LAB_PASSWORD, Lab
from commands.pools import WarmPools
from commands.psrp import RemoteSession
from commands.server import ServerConfig
from storage import Repository

ACTOR = Actor(id="bench", source="cli")

_LAB_PROCESS = """
import sys
from commands.lab.lab import Lab
servers, latency, path, tls = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4] == "https"
extra = [(f"srv{i:03d}", "healthy" if i % 3 else "iis-binding") for i in range(servers)]
with Lab(["healthy"], latency=latency, extra_servers=extra, tls=tls) as lab:
    lab.write_config(path)
    print("ready", flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
"""


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, all threads) of another process so far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def lab_process(servers: int, latency: float, transport: str = "https") -> Iterator[tuple[Config, int]]:
    """Lab servers in another process (real servers do their work elsewhere, and the lab must not
    share the benchmark's interpreter lock); yields their inventory and the process id."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lab.toml"
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        child = subprocess.Popen([sys.executable, "-c", _LAB_PROCESS, str(servers), str(latency), str(path), transport],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready", "the lab did not start"
            config = load_config(path, {})
            # Only the benchmark's servers (the lab adds its default one).
            ours = {n: c for n, c in config.servers.items() if n.startswith("srv")}
            assert all(c.transport == transport and (transport == "http" or (c.verify_tls and c.ca_bundle))
                       for c in ours.values()), "the lab's inventory is not the transport asked for"
            yield replace(config, servers=ours), child.pid
        finally:
            assert child.stdin is not None
            child.stdin.close()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def warm_check_requests(transport: str) -> list[tuple[str, str]]:
    with Lab(["healthy"], tls=transport == "https") as lab:
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
        (f"[{transport}] cold check: requests (auth = NTLM legs; Delete comes when the pool closes)",
         f"{sum(cold.values())}  {dict(sorted(cold.items()))}"),
        (f"[{transport}] warm check: requests", f"{sum(warm.values())}  {dict(sorted(warm.items()))}"),
    ]


def library_floor(transport: str) -> list[tuple[str, str]]:
    """The client CPU of the remote exchange alone, with none of the check's other work: pypsrp used
    plainly for a bare cold check (connect, authenticate, open a pool, one trivial pipeline, close)
    and a bare warm one (one trivial pipeline on an open pool), then the bot's own `RemoteSession`
    doing the same with its smallest script, against a lab server in another process."""
    with lab_process(1, 0.0, transport) as (lab_config, _pid):
        server = next(iter(lab_config.servers.values()))

        def connect() -> WSMan:
            return WSMan(server.host, port=server.port, username=server.username, password=LAB_PASSWORD,
                         ssl=transport == "https", auth=server.auth, no_proxy=True,
                         cert_validation=server.ca_bundle if transport == "https" else False)  # type: ignore[arg-type]

        def pipeline(pool: RunspacePool) -> None:
            ps = PowerShell(pool)
            ps.add_script("'x'", use_local_scope=True)  # refused by the lab's runtime: one round trip all the same
            ps.invoke()

        cold_n, warm_n = 30, 200
        started = time.process_time()
        for _ in range(cold_n):
            wsman = connect()
            with RunspacePool(wsman) as pool:
                pipeline(pool)
            wsman.close()
        cold = (time.process_time() - started) / cold_n
        wsman = connect()
        with RunspacePool(wsman) as pool:
            pipeline(pool)
            started = time.process_time()
            for _ in range(warm_n):
                pipeline(pool)
            warm = (time.process_time() - started) / warm_n
        wsman.close()
        # The bot's own remote path (RemoteSession: its transport guard, NT-hash NTLM, remembered
        # pipeline bodies) with its smallest script, still without client view, diagnosis or recording.
        started = time.process_time()
        for _ in range(cold_n):
            with RemoteSession(server, LAB_PASSWORD) as session:
                session.run("remoteaccess_state")
        ours_cold = (time.process_time() - started) / cold_n
        with RemoteSession(server, LAB_PASSWORD) as session:
            session.run("remoteaccess_state")
            started = time.process_time()
            for _ in range(warm_n):
                session.run("remoteaccess_state")
            ours_warm = (time.process_time() - started) / warm_n
    return [
        (f"[{transport}] pypsrp alone, bare check (trivial script, nothing else): client CPU, cold / warm",
         f"{cold * 1000:.1f} / {warm * 1000:.1f} ms"),
        (f"[{transport}] the bot's remote path alone (smallest script, nothing else): cold / warm",
         f"{ours_cold * 1000:.1f} / {ours_warm * 1000:.1f} ms  (100 cold: {ours_cold * 100:.2f} s of one core)"),
    ]


def trust_cost() -> list[tuple[str, str]]:
    """Client CPU of a cold check (bot's remote path, smallest script) trusting the lab's CA alone
    and trusting an enterprise-sized bundle (certifi's public roots plus the lab's CA): the runner
    loads a bundle once per process, so its size should not show per check."""
    import certifi

    with lab_process(1, 0.0, "https") as (lab_config, _pid), tempfile.TemporaryDirectory() as tmp:
        server = next(iter(lab_config.servers.values()))
        assert server.ca_bundle
        bundle = Path(tmp) / "enterprise.pem"
        bundle.write_bytes(Path(certifi.where()).read_bytes() + Path(server.ca_bundle).read_bytes())
        rows = []
        for label, cfg in (("the lab CA alone (1 certificate)", server),
                           (f"an enterprise bundle ({bundle.read_bytes().count(b'BEGIN CERTIFICATE')} certificates)",
                            replace(server, ca_bundle=str(bundle)))):
            with RemoteSession(cfg, LAB_PASSWORD) as session:  # untimed: the bundle is loaded here
                session.run("remoteaccess_state")
            n = 30
            started = time.process_time()
            for _ in range(n):
                with RemoteSession(cfg, LAB_PASSWORD) as session:
                    session.run("remoteaccess_state")
            rows.append((f"[https] cold remote path, trusting {label}", f"{(time.process_time() - started) / n * 1000:.1f} ms"))
    return rows


def layers(servers: int, latency: float, workers: int, measured: dict[str, float] | None = None) -> list[tuple[str, str]]:
    """The same sweep built up layer by layer, cold and warm, in one run: the probe alone over the
    bot's remote path, then with the client view beside it (what a check does before diagnosis and
    recording). Each row gives the wall time and the CPU per check of the bot and of the lab; on a
    machine where both share the cores, (bot + lab) x servers / cores is a floor no worker count
    or process layout can beat. `measured` receives the bot's CPU seconds per check of each layer
    (keys like "probe alone, warm")."""
    from concurrent.futures import ThreadPoolExecutor

    from commands.clientview import ClientViewSession

    cores = os.cpu_count() or 1
    rows: list[tuple[str, str]] = []
    with lab_process(servers, latency, "https") as (lab_config, lab_pid), ThreadPoolExecutor(workers) as pool:
        fleet = list(lab_config.servers.values())
        clock = lambda: datetime.now(UTC)  # noqa: E731
        warm = {s.name: RemoteSession(s, LAB_PASSWORD) for s in fleet}
        for session in warm.values():
            session.open()
        try:
            def cold_probe(s: ServerConfig) -> None:
                with RemoteSession(s, LAB_PASSWORD) as session:
                    session.probe()

            def cold_view(s: ServerConfig) -> None:
                with ClientViewSession(RemoteSession(s, LAB_PASSWORD), s, clock) as session:
                    session.probe()

            def warm_probe(s: ServerConfig) -> None:
                warm[s.name].probe()

            def warm_view(s: ServerConfig) -> None:
                ClientViewSession(warm[s.name], s, clock).probe()

            for label, cold, hot in (("probe alone", cold_probe, warm_probe),
                                     ("probe + client view", cold_view, warm_view)):
                measured_wall = {}
                for kind, fn in (("cold", cold), ("warm", hot)):
                    list(pool.map(fn, fleet))  # untimed: threads started, caches warm
                    lab_before, cpu, wall = _cpu_seconds(lab_pid), time.process_time(), time.perf_counter()
                    list(pool.map(fn, fleet))
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    lab_after = _cpu_seconds(lab_pid)
                    lab = (lab_after - lab_before) if lab_before is not None and lab_after is not None else 0.0
                    measured_wall[kind] = wall
                    if measured is not None:
                        measured[f"{label}, {kind}"] = cpu / servers
                    floor = (cpu + lab) / cores
                    rows.append((f"[https] layers: {label}, {kind}",
                                 f"{wall:.2f} s; per check bot {cpu / servers * 1000:.1f} ms, lab {lab / servers * 1000:.1f} ms"
                                 f"  (CPU floor on {cores} cores: {floor:.2f} s)"))
                rows.append((f"[https] layers: {label}, warm vs cold", f"{measured_wall['cold'] / measured_wall['warm']:.1f}x"))
        finally:
            for session in warm.values():
                session.close()
    return rows


def budget(measured: dict[str, float], servers: int) -> list[tuple[str, str]]:
    """What the two sweep goals leave for the work every check does whatever the pool (client view,
    diagnosis, recording, the sweep's bookkeeping), while the bot's one interpreter is the bound:
    then a sweep takes servers x CPU per check. With R the probe alone (cold c, warm w) and F that
    work: cold under 2 s needs (R_c + F) x servers < 2 s, and 3x needs R_c + F >= 3 (R_w + F), that
    is F <= (R_c - 3 R_w) / 2; both together need F < (2 s / servers - 3 R_w) / 3, whatever R_c.
    Measured in this run, from the layered and the full sweeps."""
    try:
        r_c, r_w = measured["probe alone, cold"], measured["probe alone, warm"]
        full_c, full_w = measured["full check, cold"], measured["full check, warm"]
    except KeyError:
        return []
    fixed = max(0.0, full_w - r_w)
    view = max(0.0, measured.get("probe + client view, warm", r_w) - r_w)
    ms = lambda seconds: f"{seconds * 1000:.1f} ms"  # noqa: E731
    return [
        ("[https] bot CPU per check that warm pools cannot remove (full warm check - warm probe)",
         f"{ms(fixed)}, of which the client view {ms(view)}"),
        ("[https] most of it the cold goal allows (2 s / servers - cold probe), one interpreter",
         ms(2.0 / servers - r_c) if 2.0 / servers > r_c
         else f"none: the cold probe alone takes {ms(r_c)} of the {ms(2.0 / servers)} per server"),
        ("[https] most of it the 3x goal allows ((cold probe - 3 x warm probe) / 2), one interpreter",
         f"{ms((r_c - 3 * r_w) / 2)}" if r_c > 3 * r_w else "none: the warm probe is over a third of the cold one"),
        # Both at once: R_c < 2 s/servers - F and R_c >= 3 R_w + 2 F give F < (2 s/servers - 3 R_w) / 3,
        # whatever R_c is: cutting the cold exchange cannot make room for F.
        ("[https] most of it both goals allow together ((2 s / servers - 3 x warm probe) / 3)",
         ms((2.0 / servers - 3 * r_w) / 3) if 2.0 / servers > 3 * r_w else "none"),
        ("[https] full check, bot CPU cold / warm (the ratio while the bot's CPU is the bound)",
         f"{ms(full_c)} / {ms(full_w)}: {full_c / full_w:.1f}x"),
    ]


def _service(servers: dict[str, ServerConfig], db: Path, workers: int, factory: object) -> Service:
    config = Config(servers=servers)
    return Service(config, Repository(f"sqlite:///{db}"), environ={},
                   clock=lambda: datetime.now(UTC), session_factory=factory,  # type: ignore[arg-type]
                   max_workers=workers)


def _timed_sweep(service: Service, lab_pid: int) -> tuple[float, float, float | None, list[str]]:
    """One sweep: wall seconds, this process's CPU seconds, the lab's CPU seconds, statuses."""
    lab_before = _cpu_seconds(lab_pid)
    cpu, wall = time.process_time(), time.perf_counter()
    report = sweep(service, ACTOR)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    lab_after = _cpu_seconds(lab_pid)
    lab = lab_after - lab_before if lab_before is not None and lab_after is not None else None
    return wall, cpu, lab, [r.status for r in report.results]


def sweeps(servers: int, latency: float, workers: int, transport: str,
           measured: dict[str, float] | None = None) -> list[tuple[str, str]]:
    """Cold and warm sweeps of the whole use case; `measured` receives the bot's CPU seconds per check
    ("full check, cold" and "full check, warm")."""
    with lab_process(servers, latency, transport) as (lab_config, lab_pid), tempfile.TemporaryDirectory() as tmp:
        inventory = {n: replace(c, keep_alive_minutes=5) for n, c in lab_config.servers.items()}
        cold_service = _service(inventory, Path(tmp) / "cold.db", workers, RemoteSession)
        # A running bot has imported its modules and warmed its caches: an untimed first sweep does
        # that here (and, as in a real fleet, gives the timed sweep previous checks to compare with).
        sweep(cold_service, ACTOR)
        cold_s, cold_cpu, cold_lab, cold_status = _timed_sweep(cold_service, lab_pid)
        cold_service.close()

        pools = WarmPools()
        warm_service = _service(inventory, Path(tmp) / "warm.db", workers, pools)
        sweep(warm_service, ACTOR)  # opens the pools
        warm_s, warm_cpu, warm_lab, warm_status = _timed_sweep(warm_service, lab_pid)
        reopened = pools.reopened
        pools.close()
        warm_service.close()
    errors = sum(status == "error" for status in cold_status + warm_status)
    ratio = cold_s / warm_s
    per_check = {"cold": cold_cpu / servers, "warm": warm_cpu / servers}
    if measured is not None:
        measured.update({f"full check, {kind}": cpu for kind, cpu in per_check.items()})
    lab = {"cold": cold_lab, "warm": warm_lab}
    t = f"[{transport}]"
    rows = [
        (f"{t} cold sweep, {servers} servers, {latency * 1000:.0f} ms/request, {workers} workers",
         f"{cold_s:.2f} s" + ("  (under 2 s)" if cold_s < 2 else "  (over the 2 s goal)")),
        (f"{t} warm sweep, same fleet (pools opened by a first sweep)", f"{warm_s:.2f} s  ({reopened} pool(s) reopened)"),
        (f"{t} warm vs cold (same run)", f"{ratio:.1f}x faster" + ("  (>= 3x)" if ratio >= 3 else "  (under the 3x goal)")),
        (f"{t} servers that could not be checked", str(errors)),
    ]
    for kind in ("cold", "warm"):
        lab_cpu = lab[kind]
        rows.append((f"{t} bot CPU per check, {kind} (probe, client view, diagnose, record)",
                     f"{per_check[kind] * 1000:.1f} ms"
                     + (f"  (lab: {lab_cpu / servers * 1000:.1f} ms)" if lab_cpu is not None else "")))
    # The bot's Python code runs under one interpreter lock: its CPU seconds are a floor on a sweep's
    # wall time, whatever the worker count; the round trips are the other floor.
    rows.append((f"{t} projected 1,000-server sweep: bot CPU (= wall-time floor on one core)",
                 f"cold {per_check['cold'] * 1000:.0f} s, warm {per_check['warm'] * 1000:.0f} s"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every HTTP request")
    parser.add_argument("--workers", type=int, default=25, help="sweep concurrency bound")
    parser.add_argument("--transports", default="https,http", help="comma-separated: https (default deployment), http")
    args = parser.parse_args(argv)
    transports = [t for t in args.transports.split(",") if t]
    if not transports or set(transports) - {"https", "http"}:
        parser.error("--transports takes https and/or http")
    # The sweeps are CPU-bound on a small machine: say what it was doing, so figures can be compared.
    rows = [("machine", f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")]
    measured: dict[str, float] = {}
    for transport in transports:
        https = transport == "https"
        rows += warm_check_requests(transport)
        rows += sweeps(args.servers, args.latency, args.workers, transport, measured if https else None)
        rows += library_floor(transport)
        if https:
            rows += layers(args.servers, args.latency, args.workers, measured)
            rows += budget(measured, args.servers)
            rows += trust_cost()
    rows.append(("load average at the end", f"{os.getloadavg()[0]:.1f}"))
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
