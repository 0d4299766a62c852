"""run_fleet: bounded concurrency, one operation per server at a time, errors kept per server."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from commands.fleet import ServerBusy, exclusive, run_fleet
from commands.lab.lab import LAB_PASSWORD, Lab
from commands.psrp import RemoteSession


@dataclass(frozen=True)
class Srv:
    name: str


def test_concurrency_is_bounded_and_results_keep_their_order():
    active = 0
    peak = 0
    lock = threading.Lock()

    def work(server: Srv) -> str:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        return server.name

    servers = [Srv(f"s{i}") for i in range(30)]
    assert run_fleet(servers, work, max_workers=4) == [s.name for s in servers]
    assert peak == 4


def test_never_two_operations_on_one_server():
    inside: dict[str, int] = {}
    overlap = []
    lock = threading.Lock()

    def work(server: Srv) -> None:
        with lock:
            inside[server.name] = inside.get(server.name, 0) + 1
            if inside[server.name] > 1:
                overlap.append(server.name)
        time.sleep(0.01)
        with lock:
            inside[server.name] -= 1

    servers = [Srv("a"), Srv("b")] * 10
    run_fleet(servers, work, max_workers=8)
    # A fix holding the same process-wide lock also excludes fleet checks of that server.
    with exclusive("a"):
        t = threading.Thread(target=run_fleet, args=([Srv("a")], work))
        t.start()
        time.sleep(0.05)
        assert inside.get("a", 0) == 0
    t.join()
    assert overlap == []


def test_errors_are_returned_in_place_and_reported():
    seen = []

    def work(server: Srv) -> str:
        if server.name == "bad":
            raise ValueError("broken")
        return "ok"

    results = run_fleet([Srv("good"), Srv("bad")], work, on_result=lambda s, r, e: seen.append((s.name, r, e)))
    assert results[0] == "ok" and isinstance(results[1], ValueError)
    assert sorted(n for n, _, _ in seen) == ["bad", "good"]


def test_fleet_check_of_the_lab():
    with Lab(["fleet"]) as lab:
        configs = [lab.server_config(n) for n in lab.servers]

        def check(cfg):
            with RemoteSession(cfg, LAB_PASSWORD) as s:
                return s.probe()["host"]["computer_name"]

        results = run_fleet(configs, check, max_workers=4)
    assert results == [n.upper() for n in lab.servers]


def test_without_wait_a_busy_server_is_reported_at_once_and_the_others_run():
    ran: list[str] = []
    reported: list[tuple[str, object]] = []
    with exclusive("busy01"):  # another operation (a fix) holds this server
        started = time.monotonic()
        results = run_fleet(
            [Srv("busy01"), Srv("free01")],
            lambda s: ran.append(s.name) or s.name,
            wait=False,
            on_result=lambda s, result, error: reported.append((s.name, type(error).__name__ if error else result)),
        )
        took = time.monotonic() - started
    assert took < 1.0
    assert ran == ["free01"]
    assert isinstance(results[0], ServerBusy) and results[0].server == "busy01" and results[1] == "free01"
    assert sorted(reported) == [("busy01", "ServerBusy"), ("free01", "free01")]
    # The lock was never taken by the busy attempt: it is free again once its holder lets go.
    assert run_fleet([Srv("busy01")], lambda s: s.name, wait=False) == ["busy01"]
