"""Soak: the bot under load, faults and hostile connections at once (issue 14). Not a test; prints figures.

For `--seconds` (default 60; bounded, the whole run stays under 3 minutes), against the real bot
(waitress + bolt + the real Service + SQLite) in HTTP mode on 127.0.0.1:

- rounds of 50 concurrent, correctly signed slash commands (checks, status, history, help) from
  10 users, plus an Approve click on each new plan of the healthy-to-fix server;
- 10 idle TCP connections held open (headers never finished, reopened when the server closes them);
- a lab server that hangs every script (`hang` fault: each check of it runs into its timeout);
- a slow database: another connection takes SQLite's write lock for 0.4 s every 1.5 s;
- `/healthz` polled throughout.

The lab and the fake Slack API run in a child process, so the bot's process holds only the bot and
the small load generator: its memory is the bot's. Reported: the slowest acknowledgement and /healthz
answer (must stay under Slack's 3 s), plans left RUNNING at the end (must be 0), and the bot's memory
(RSS, and Python's own allocations through tracemalloc) with its slope over the last half of the run,
plus the lines whose allocations grew most from the middle of the run to the end.

    PYTHONPATH=. python3 bench/bench_soak.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import functools
import gc
import itertools
import logging
import multiprocessing
import socket
import sqlite3
import statistics
import tempfile
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

from bot.config import load_config
from bot.service import Service, build_service
from bot.slack.app import create_app, make_web_client
from bot.slack.blocks import APPROVE_ACTION
from bot.slack.server import http_server
from commands.lab import Lab
from storage.records import PlanRecord
from storage.states import PlanState
from tests.fakes import payloads
from tests.fakes.slack_api import FakeSlackApi
from tests.slack.conftest import BOT_TOKEN, SIGNING_SECRET

HANGING, FIXABLE = "vpn-healthy", "vpn-iis"
USERS = [f"U0SOAK{n:03d}" for n in range(10)]
APPROVER = "U0SOAKAPR"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.cache
def _library(name: str) -> ctypes.CDLL:
    """A C library already loaded in this process (looked up once: find_library runs ldconfig)."""
    return ctypes.CDLL(ctypes.util.find_library(name) or f"lib{name}.so.{'6' if name == 'c' else '0'}")


def malloc_mib() -> tuple[float, float]:
    """(in use, free but kept) by the C allocator (glibc's mallinfo2): SQLite's page caches, OpenSSL,
    large Python objects. RSS alone cannot tell a leak from freed memory the allocator keeps."""
    try:
        libc = _library("c")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return float("nan"), float("nan")
    return (info.uordblks + info.hblkhd) / 2**20, info.fordblks / 2**20


def malloc_trim() -> bool:
    """Ask glibc to give freed memory back to the system: what RSS then loses was not in use."""
    try:
        return bool(_library("c").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def sqlite_mib() -> float:
    """Memory SQLite itself holds now (sqlite3_memory_used: page caches, statements, schema), part of
    'C malloc in use'. The same libsqlite3 the sqlite3 module loaded, so the same counters."""
    try:
        lib = _library("sqlite3")
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        return int(lib.sqlite3_memory_used()) / 2**20
    except (OSError, AttributeError):
        return float("nan")


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) points, in MiB per minute."""
    if len(points) < 3:
        return float("nan")
    return statistics.linear_regression([t for t, _ in points], [m for _, m in points]).slope * 60


def fakes(conn: Connection, config_path: str, db: str) -> None:
    """The child process: the lab and the fake Slack API (scaffolding, not the bot's memory). Both
    keep a log of every request they saw; it is cleared every second."""
    logging.basicConfig(level=logging.CRITICAL)
    with FakeSlackApi() as slack_api, Lab(["iis-binding", "healthy"], faults={HANGING: ["hang"]}) as lab:
        lab.write_config(Path(config_path), database_url=f"sqlite:///{db}")
        conn.send((slack_api.url, slack_api.response_url()))
        while not conn.poll(1.0):
            slack_api.reset()
            lab.clear_logs()


def post(url: str, body: str) -> tuple[int, float]:
    request = urllib.request.Request(url + "/slack/events", data=body.encode(), headers=payloads.sign(SIGNING_SECRET, body), method="POST")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return response.status, time.perf_counter() - started
    except urllib.error.HTTPError as exc:
        return exc.code, time.perf_counter() - started
    except OSError:
        return 0, time.perf_counter() - started


def healthz(url: str) -> float:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        exc.read()
    except OSError:
        return 10.0
    return time.perf_counter() - started


def idle_connections(port: int, count: int, stop: threading.Event) -> None:
    """Keep `count` connections open with unfinished headers; reopen those the server closes."""
    sockets: list[socket.socket] = []
    while not stop.is_set():
        while len(sockets) < count:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.sendall(b"POST /slack/events HTTP/1.1\r\nHost: soak\r\n")
                s.setblocking(False)
                sockets.append(s)
            except OSError:
                break
        for s in list(sockets):
            try:
                if s.recv(1) == b"":
                    raise OSError
            except BlockingIOError:
                continue
            except OSError:
                s.close()
                sockets.remove(s)
        stop.wait(0.5)
    for s in sockets:
        s.close()


def slow_database(db: Path, stop: threading.Event, hold: float = 0.4, every: float = 1.5) -> None:
    while not stop.wait(every - hold):
        conn = sqlite3.connect(db, isolation_level=None, timeout=5)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            time.sleep(hold)
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass
        finally:
            conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--top", type=int, default=10, help="lines of allocation growth to print")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    rss_start = rss_mib()
    deadline_total = time.monotonic() + 170  # bounded whatever happens
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "soak.db"
        parent, child = multiprocessing.get_context("spawn").Pipe()
        scaffolding = multiprocessing.get_context("spawn").Process(
            target=fakes, args=(child, str(Path(tmp) / "lab.toml"), str(db)), daemon=True
        )
        scaffolding.start()
        try:
            run(args, parent, tmp, db, rss_start, deadline_total)
        finally:
            parent.send("stop")
            scaffolding.join(timeout=10)
            if scaffolding.is_alive():
                scaffolding.terminate()


def run(args: argparse.Namespace, fakes_conn: Connection, tmp: str, db: Path, rss_start: float, deadline_total: float) -> None:
    """The bot, its load and its faults; the fakes already run in the child process."""
    if not fakes_conn.poll(60):
        raise SystemExit("the lab did not start")
    slack_url, response_url = fakes_conn.recv()
    tracemalloc.start(1)
    config = load_config(Path(tmp) / "lab.toml", {})
    config = replace(config, slack=replace(config.slack, approvers=(APPROVER,), two_person_rule=True))
    service = build_service(config, {}, clock=lambda: datetime.now(UTC))
    app = create_app(service, config, client=make_web_client(BOT_TOKEN, slack_url), signing_secret=SIGNING_SECRET)
    server = http_server(app, service, "127.0.0.1", 0).start()
    url = server.url
    stop = threading.Event()
    background = [
        threading.Thread(target=idle_connections, args=(server.port, 10, stop), daemon=True),
        threading.Thread(target=slow_database, args=(db, stop), daemon=True),
    ]
    for t in background:
        t.start()
    post(url, payloads.form_body(payloads.slash_command("help", response_url=response_url)))  # warm up
    time.sleep(1.0)
    rss_loaded = rss_mib()
    latencies: list[float] = []
    health: list[float] = []
    codes: dict[int, int] = {}
    approved: set[int] = set()
    texts = itertools.cycle([f"check {HANGING}", f"check {FIXABLE}", "status", f"history {FIXABLE}", "help"])
    rounds = 0
    rss_rounds: list[float] = []
    began = time.monotonic()
    end = began + args.seconds
    samples: list[tuple[float, float, float, float, float]] = []  # (seconds into the run, RSS, traced, malloc in use, SQLite) MiB
    middle: tracemalloc.Snapshot | None = None
    threads_peak = 0
    with ThreadPoolExecutor(60) as pool:
        while time.monotonic() < end:
            bodies = [
                payloads.form_body(payloads.slash_command(next(texts), user=USERS[n % len(USERS)], response_url=response_url))
                for n in range(50)
            ]
            futures = [pool.submit(post, url, b) for b in bodies]
            futures.append(pool.submit(lambda: (200, healthz(url))))
            for plan in _proposed_plans(service, approved):
                click = payloads.block_actions(APPROVE_ACTION, str(plan.id), user=APPROVER, channel=str(plan.channel), message_ts=str(plan.message_ts))
                futures.append(pool.submit(post, url, payloads.actions_body(click)))
                approved.add(plan.id)
            for i, f in enumerate(futures):
                code, took = f.result()
                (health if i == 50 else latencies).append(took)
                codes[code] = codes.get(code, 0) + 1
            rounds += 1
            rss_rounds.append(rss_mib())
            threads_peak = max(threads_peak, threading.active_count())
            gc.collect()  # count live objects only, not cycles waiting for the collector
            now = time.monotonic() - began
            samples.append((now, rss_rounds[-1], tracemalloc.get_traced_memory()[0] / 2**20, malloc_mib()[0], sqlite_mib()))
            if middle is None and now >= args.seconds / 2:
                middle = tracemalloc.take_snapshot()
            time.sleep(1.0)
    # Let the work finish (the hanging server's checks time out), bounded.
    drained = app.sstp.drain(timeout=max(5.0, deadline_total - time.monotonic() - 10))
    stop.set()
    for t in background:
        t.join(timeout=5)
    running = [p for p in (service.get_plan(i) for i in sorted(approved)) if p.state == "RUNNING"]
    states: dict[str, int] = {}
    for i in sorted(approved):
        s = service.get_plan(i).state
        states[s] = states.get(s, 0) + 1
    rss_end = rss_mib()  # the bot still up, its work done
    gc.collect()
    traced_end = tracemalloc.get_traced_memory()[0] / 2**20
    malloc_end = malloc_mib()
    rss_trimmed = rss_mib() if malloc_trim() else float("nan")
    final = tracemalloc.take_snapshot()
    server.stop()
    app.sstp.close()
    service.close()
    print(f"rounds: {rounds} x 50 signed commands (+ clicks, /healthz); answers by status: {dict(sorted(codes.items()))}")
    print(f"acknowledgement: max {max(latencies) * 1000:.0f} ms, p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"p99 {sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms over {len(latencies)} requests")
    print(f"/healthz: max {max(health) * 1000:.0f} ms over {len(health)} polls")
    print(f"plans approved: {len(approved)}, by final state: {states}; left RUNNING: {len(running)}; work drained: {drained}")
    print(f"bot process memory (RSS): {rss_start:.0f} MiB at start, {rss_loaded:.0f} MiB with the bot up, {rss_end:.0f} MiB "
          f"after the load and the drain, {rss_trimmed:.0f} MiB once glibc returned its free memory (malloc_trim); "
          "the lab and the fake Slack API run in a child process")
    quarter = max(1, len(samples) // 4)
    picked = samples[quarter - 1 :: quarter]
    print("  over the rounds, every quarter (s: RSS / Python traced / C malloc in use / of which SQLite, MiB): "
          + ", ".join(f"{t:.0f}: {r:.0f} / {m:.1f} / {c:.1f} / {q:.1f}" for t, r, m, c, q in picked)
          + f"; after the drain: traced {traced_end:.1f}, malloc in use {malloc_end[0]:.1f}, malloc free but kept {malloc_end[1]:.1f}")
    half = [x for x in samples if x[0] >= args.seconds / 2]
    print(f"  threads in the bot's process: {threads_peak} at most during the rounds, {threading.active_count()} once it is shut down")
    print(f"  last half of the run ({len(half)} rounds), slope in MiB/min: RSS {slope_per_minute([(x[0], x[1]) for x in half]):+.2f}, "
          f"Python traced {slope_per_minute([(x[0], x[2]) for x in half]):+.2f}, C malloc in use {slope_per_minute([(x[0], x[3]) for x in half]):+.2f}, "
          f"of which SQLite {slope_per_minute([(x[0], x[4]) for x in half]):+.2f}")
    if middle is not None:
        print(f"  largest growth of allocations from the middle of the run to the end (by line, top {args.top}):")
        own = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]  # the measuring itself
        for stat in final.filter_traces(own).compare_to(middle.filter_traces(own), "lineno")[: args.top]:
            frame = stat.traceback[0]
            print(f"    {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {frame.filename}:{frame.lineno}")
    ok = max(latencies) < 3.0 and max(health) < 3.0 and not running
    print("PASS" if ok else "FAIL")
    if not ok:
        raise SystemExit(1)


def _proposed_plans(service: Service, seen: set[int]) -> list[PlanRecord]:
    """The newest plan of the fixable server still waiting for a click (at most one per round)."""
    plans = []
    for entry in service.history(FIXABLE, limit=5):
        plan = entry.plan
        if plan is not None and plan.id not in seen and plan.state == PlanState.PROPOSED.value and plan.message_ts:
            plans.append(plan)
    return plans[:1]


if __name__ == "__main__":
    main()
