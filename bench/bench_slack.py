"""How fast HTTP mode acknowledges `/sstp` under load (not a test; prints a table).

50 concurrent, correctly signed slash commands per round against waitress on 127.0.0.1, while the
checks they start keep running in the background (a fake service that sleeps). The bot (waitress,
bolt, the fake service) and the fake Slack Web API each run in a child process, the load generator here. Slack gives up after
3 seconds; the target is p99 < 100 ms.

    PYTHONPATH=. python bench/bench_slack.py [--rounds 10] [--concurrency 50] [--check-seconds 0.5]
"""

from __future__ import annotations

import argparse
import functools
import logging
import multiprocessing
import os
import statistics
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench._common import print_table
from bot.slack.app import create_app, make_web_client
from bot.slack.server import http_server
from tests.fakes import payloads
from tests.fakes.slack_api import FakeSlackApi
from tests.slack.conftest import BOT_TOKEN, SIGNING_SECRET, make_config
from tests.slack.fake_service import FakeService, hash_mismatch


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def one_request(url: str, body: str, *, barrier: threading.Barrier) -> tuple[int, float]:
    headers = payloads.sign(SIGNING_SECRET, body)
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    barrier.wait()
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        return response.status, time.perf_counter() - started


def fake_slack(ready: Any, stop: Any) -> None:
    """The fake Slack Web API, in its own process: it is not part of what is measured."""
    with FakeSlackApi() as slack_api:
        ready.put((slack_api.url, slack_api.response_url()))
        stop.wait()


def serve(args: argparse.Namespace, api_url: str, ready: Any, stop: Any, counts: Any) -> None:
    """The bot, in its own process so the load generator does not compete for its GIL."""
    logging.getLogger("bot.slack").setLevel(logging.CRITICAL if not os.environ.get("BENCH_DEBUG") else logging.DEBUG)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    if os.environ.get("BENCH_DEBUG"):
        logging.basicConfig(level=logging.DEBUG)
    config = make_config()
    service = FakeService(config, check_delay=args.check_seconds)
    for name in config.servers:
        service.results[name] = hash_mismatch(name)
    app = create_app(service, config, client=make_web_client(BOT_TOKEN, api_url), signing_secret=SIGNING_SECRET)
    server = http_server(app, service, "127.0.0.1", 0, threads=args.threads)
    inner = server.server.application
    in_app: list[float] = []

    def timed(environ: dict[str, Any], start_response: Any) -> Any:
        started = time.perf_counter()
        try:
            return inner(environ, start_response)
        finally:
            in_app.append(time.perf_counter() - started)

    server.server.application = timed
    server.start()
    ready.put(server.url + "/slack/events")
    stop.wait()
    counts.put((service.count("check"), in_app))
    server.stop()
    app.sstp.close(wait=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--check-seconds", type=float, default=0.5, help="how long each fake check sleeps")
    parser.add_argument("--threads", type=int, default=16, help="waitress worker threads")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to let background checks run before stopping")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    ready, counts, stop, stop_api = context.Queue(), context.Queue(), context.Event(), context.Event()
    api = context.Process(target=fake_slack, args=(ready, stop_api), daemon=True)
    api.start()
    api_url, response_url = ready.get(timeout=60)
    bot = context.Process(target=serve, args=(args, api_url, ready, stop, counts), daemon=True)
    bot.start()
    url = ready.get(timeout=60)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    try:
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            for round_ in range(args.rounds):
                barrier = threading.Barrier(args.concurrency)
                bodies = [
                    # two servers per command, one person per request: each starts its own check (one
                    # check per server at a time and the per-user limit apply to single-server checks
                    # and to each person), so the checks keep running in the background as before
                    payloads.form_body(payloads.slash_command(
                        f"check vpn0{1 + (round_ + i) % 3} vpn0{1 + (round_ + i + 1) % 3}",
                        user=f"U0BENCH{i:03d}", response_url=response_url,
                    ))
                    for i in range(args.concurrency)
                ]
                for status, elapsed in pool.map(functools.partial(one_request, url, barrier=barrier), bodies):
                    statuses[status] = statuses.get(status, 0) + 1
                    latencies.append(elapsed)
        time.sleep(args.settle)  # let the background checks show they progress
    finally:
        stop.set()
        in_flight, in_app = counts.get(timeout=30)
        bot.join(timeout=30)
        stop_api.set()
        api.join(timeout=30)

    ms = [v * 1000 for v in latencies]
    rows = [
        ("requests", f"{len(ms)} ({args.rounds} rounds x {args.concurrency} concurrent)"),
        ("HTTP status", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))),
        ("ack p50", f"{percentile(ms, 50):.1f} ms"),
        ("ack p90", f"{percentile(ms, 90):.1f} ms"),
        ("ack p99", f"{percentile(ms, 99):.1f} ms"),
        ("ack max", f"{max(ms):.1f} ms"),
        ("ack mean", f"{statistics.mean(ms):.1f} ms"),
        ("in the bot (WSGI app) p50", f"{percentile([v * 1000 for v in in_app], 50):.2f} ms"),
        ("in the bot (WSGI app) p99", f"{percentile([v * 1000 for v in in_app], 99):.2f} ms"),
        (f"checks started (incl. {args.settle:g} s after)", str(in_flight)),
        ("target p99 < 100 ms", "met" if percentile(ms, 99) < 100 else "NOT met"),
    ]
    print_table(rows, header="metric")


if __name__ == "__main__":
    main()
