"""How fast HTTP mode acknowledges `/sstp` under load (not a test; prints a table).

50 concurrent, correctly signed slash commands per round against waitress on 127.0.0.1, while the
checks they start keep running in the background (a fake service that sleeps). Slack gives up after
3 seconds; the target is p99 < 100 ms.

    PYTHONPATH=. python bench/bench_slack.py [--rounds 10] [--concurrency 50] [--check-seconds 0.5]
"""

from __future__ import annotations

import argparse
import functools
import logging
import statistics
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--check-seconds", type=float, default=0.5, help="how long each fake check sleeps")
    parser.add_argument("--threads", type=int, default=16, help="waitress worker threads")
    args = parser.parse_args()
    logging.getLogger("bot.slack").setLevel(logging.CRITICAL)  # the fake API stops before the last checks end
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    config = make_config()
    service = FakeService(config, check_delay=args.check_seconds)
    for name in config.servers:
        service.results[name] = hash_mismatch(name)
    with FakeSlackApi() as slack_api:
        app = create_app(service, config, client=make_web_client(BOT_TOKEN, slack_api.url), signing_secret=SIGNING_SECRET)
        server = http_server(app, service, "127.0.0.1", 0, threads=args.threads).start()
        url = server.url + "/slack/events"
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        try:
            with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                for round_ in range(args.rounds):
                    barrier = threading.Barrier(args.concurrency)
                    bodies = [
                        payloads.form_body(payloads.slash_command(f"check vpn0{1 + (round_ + i) % 3}", response_url=slack_api.response_url()))
                        for i in range(args.concurrency)
                    ]
                    for status, elapsed in pool.map(functools.partial(one_request, url, barrier=barrier), bodies):
                        statuses[status] = statuses.get(status, 0) + 1
                        latencies.append(elapsed)
            in_flight = service.count("check")
        finally:
            server.stop()
            app.sstp.close(wait=False)

    ms = [v * 1000 for v in latencies]
    rows = [
        ("requests", f"{len(ms)} ({args.rounds} rounds x {args.concurrency} concurrent)"),
        ("HTTP status", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))),
        ("ack p50", f"{percentile(ms, 50):.1f} ms"),
        ("ack p90", f"{percentile(ms, 90):.1f} ms"),
        ("ack p99", f"{percentile(ms, 99):.1f} ms"),
        ("ack max", f"{max(ms):.1f} ms"),
        ("ack mean", f"{statistics.mean(ms):.1f} ms"),
        ("checks started meanwhile", str(in_flight)),
        ("target p99 < 100 ms", "met" if percentile(ms, 99) < 100 else "NOT met"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'metric':<{width}}  value")
    print(f"{'-' * width}  {'-' * 40}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
