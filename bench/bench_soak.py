"""Soak: the bot under load, faults and hostile connections at once (issue 14). Not a test; prints figures.

For `--seconds` (default 60; bounded, the whole run stays under 3 minutes), against the real bot
(waitress + bolt + the real Service + SQLite) in HTTP mode on 127.0.0.1:

- rounds of 50 concurrent, correctly signed slash commands (checks, status, history, help) from
  10 users, plus an Approve click on each new plan of the healthy-to-fix server;
- 10 idle TCP connections held open (headers never finished, reopened when the server closes them);
- a lab server that hangs every script (`hang` fault: each check of it runs into its timeout);
- a slow database: another connection takes SQLite's write lock for 0.4 s every 1.5 s;
- `/healthz` polled throughout.

Reported: the slowest acknowledgement and /healthz answer (must stay under Slack's 3 s), plans left
RUNNING at the end (must be 0), resident memory before and after.

    PYTHONPATH=. python3 bench/bench_soak.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import socket
import sqlite3
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
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
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    rss_start = rss_mib()
    deadline_total = time.monotonic() + 170  # bounded whatever happens
    with tempfile.TemporaryDirectory() as tmp, FakeSlackApi() as slack_api, \
            Lab(["iis-binding", "healthy"], faults={HANGING: ["hang"]}) as lab:
        db = Path(tmp) / "soak.db"
        config = load_config(lab.write_config(Path(tmp) / "lab.toml", database_url=f"sqlite:///{db}"), {})
        config = replace(config, slack=replace(config.slack, approvers=(APPROVER,), two_person_rule=True))
        service = build_service(config, {}, clock=lambda: datetime.now(UTC))
        app = create_app(service, config, client=make_web_client(BOT_TOKEN, slack_api.url), signing_secret=SIGNING_SECRET)
        server = http_server(app, service, "127.0.0.1", 0).start()
        url = server.url
        response_url = slack_api.response_url()
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
        end = time.monotonic() + args.seconds
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
                slack_api.reset()  # the fake Slack API keeps every call it saw: not the bot's memory
                rss_rounds.append(rss_mib())
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
        server.stop()
        app.sstp.close()
        service.close()
    print(f"rounds: {rounds} x 50 signed commands (+ clicks, /healthz); answers by status: {dict(sorted(codes.items()))}")
    print(f"acknowledgement: max {max(latencies) * 1000:.0f} ms, p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"p99 {sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms over {len(latencies)} requests")
    print(f"/healthz: max {max(health) * 1000:.0f} ms over {len(health)} polls")
    print(f"plans approved: {len(approved)}, by final state: {states}; left RUNNING: {len(running)}; work drained: {drained}")
    print(f"memory (RSS): {rss_start:.0f} MiB at start, {rss_loaded:.0f} MiB with the bot up, {rss_end:.0f} MiB after the load "
          f"(the lab, the fake Slack API and the load generator share this process)")
    quarter = max(1, len(rss_rounds) // 4)
    print("memory over the rounds (RSS, MiB, every quarter): " + ", ".join(f"{v:.0f}" for v in rss_rounds[quarter - 1 :: quarter]))
    ok = max(latencies) < 3.0 and max(health) < 3.0 and not running
    print("PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


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
