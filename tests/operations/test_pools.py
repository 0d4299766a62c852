"""Warm runspace pools (DESIGN 13): a warm check is one Command and its Receive; a dropped pool is
reopened once; fixes run in a pool of their own; idle pools are closed after keep_alive_minutes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.service import Actor, Service
from commands.lab import Lab
from commands.lab.lab import LAB_PASSWORD
from commands.pools import WarmPools
from storage import Repository


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(["healthy", "remoteaccess-stopped"]) as fleet:
        yield fleet


def actions(lab: Lab, name: str) -> Counter[str]:
    return Counter(r.action for r in lab.servers[name].requests)


def drop_shells(lab: Lab, name: str) -> None:
    """What WinRM does to an idle shell after its idle timeout (or a reboot does to all of them)."""
    endpoint = lab.servers[name].endpoint
    with endpoint._shells_lock:
        endpoint._shells.clear()


def test_warm_check_is_two_requests_and_a_dropped_pool_is_reopened(lab: Lab) -> None:
    cfg = replace(lab.server_config("vpn-healthy"), keep_alive_minutes=5)
    ticker = Ticker()
    pools = WarmPools(monotonic=ticker)
    try:
        with pools(cfg, LAB_PASSWORD) as session:
            cold = session.probe()
        assert pools.opened == 1 and pools.warm_servers() == ["vpn-healthy"]
        lab.clear_logs()
        with pools(cfg, LAB_PASSWORD) as session:
            warm = session.probe()
        assert warm["host"] == cold["host"]
        assert actions(lab, "vpn-healthy") == Counter({"Command": 1, "Receive": 1})
        assert pools.opened == 1

        drop_shells(lab, "vpn-healthy")
        with pools(cfg, LAB_PASSWORD) as session:
            again = session.probe()
        assert again["host"] == cold["host"] and pools.reopened == 1 and pools.opened == 2

        ticker.now += 5 * 60 - 1
        assert pools.close_idle() == 0
        ticker.now += 1
        assert pools.close_idle() == 1
        assert lab.servers["vpn-healthy"].endpoint.open_shells == 0 and pools.warm_servers() == []
    finally:
        pools.close()


def test_keep_alive_zero_keeps_nothing(lab: Lab) -> None:
    cfg = lab.server_config("vpn-healthy")
    assert cfg.keep_alive_minutes == 0
    pools = WarmPools()
    with pools(cfg, LAB_PASSWORD) as session:
        session.probe()
    assert pools.warm_servers() == [] and lab.servers["vpn-healthy"].endpoint.open_shells == 0


def test_service_checks_warm_and_fixes_in_their_own_pool(lab: Lab, tmp_path: Path) -> None:
    servers = {n: replace(lab.server_config(n), keep_alive_minutes=5, password_env="LAB_PW") for n in lab.servers}
    from bot.config import Config

    config = Config(servers=servers)
    pools = WarmPools()
    service = Service(config, Repository(f"sqlite:///{tmp_path / 'bot.db'}"), environ={"LAB_PW": LAB_PASSWORD},
                      clock=lambda: datetime.now(UTC), session_factory=pools)
    actor = Actor(id="cli:test", source="cli")
    try:
        service.check(list(servers.values()), actor)
        lab.clear_logs()
        (outcome,) = service.check([servers["vpn-stopped"]], actor)
        assert outcome.plan_id is not None
        assert sum(actions(lab, "vpn-stopped").values()) == 2
        shells_before = lab.servers["vpn-stopped"].endpoint.open_shells
        assert shells_before == 1
        plan = service.approve(outcome.plan_id, Actor(id="cli:admin", source="cli"), authorised=True)
        lab.clear_logs()
        fixed = service.execute(plan.id, Actor(id="cli:admin", source="cli"))
        assert fixed.state == "SUCCEEDED"
        seen = actions(lab, "vpn-stopped")
        assert seen["Create"] == 1 and seen["Delete"] == 1  # the fix's own pool, opened and closed
        assert lab.servers["vpn-stopped"].endpoint.open_shells == 1  # the warm pool stays for checks
        lab.clear_logs()
        (after,) = service.check([servers["vpn-stopped"]], actor)
        assert after.result.status == "healthy" and sum(actions(lab, "vpn-stopped").values()) == 2
    finally:
        pools.close()
        service.close()
