"""Fixtures for the storage tests: a fake clock, a repository on a temp SQLite file, sample data."""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storage import PlanState, Repository

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
TTL = timedelta(minutes=15)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def fake_der(seed: str, size: int = 1500) -> str:
    """Deterministic base64 of `size` pseudo-random bytes (stands in for a certificate's DER)."""
    out = b""
    block = seed.encode()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return base64.b64encode(out[:size]).decode()


def sample_snapshot(server: str = "VPN01", *, collected_at: str = "2026-11-25T12:00:00Z",
                    vpn_connections: int = 12, iis_cert: str = "AB" * 20) -> dict[str, Any]:
    """A realistic snapshot v1: five certificates, the seed's IIS binding conflict."""
    sstp = "3F1C" * 10
    return {
        "schema": "sstp-bot/snapshot/v1",
        "collected_at": collected_at,
        "host": {"computer_name": server, "os_caption": "Microsoft Windows Server 2022 Standard",
                 "os_build": "20348", "ps_version": "5.1.20348.2849", "is_admin": True},
        "services": {"RemoteAccess": {"status": "Running", "start_type": "Automatic"},
                     "SstpSvc": {"status": "Running", "start_type": "Manual"},
                     "W3SVC": {"status": "Running", "start_type": "Automatic"}, "WAS": None},
        "sstp": {"sha256_hash": "5CE8" * 16, "sha1_hash": sstp, "use_https": True,
                 "is_hash_configured_by_admin": True, "listener_port": 443,
                 "remote_access": {"vpn_status": "Installed", "thumbprint": sstp}},
        "http_sys": {
            "ip_bindings": [{"endpoint": "0.0.0.0:443", "cert_hash": iis_cert,
                             "app_id": "{4dc3e181-e14b-4a21-b022-59fc669b0914}", "store": "MY",
                             "ctl_store": None}],
            "sni_bindings": [],
            "url_reservations": [{"url": "https://+:443/sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/",
                                  "sddl": "D:(A;;GA;;;S-1-5-80-1234)"}]},
        "iis": {"installed": True, "https_bindings": [{"site": "Default Web Site",
                                                       "binding_information": "*:443:",
                                                       "cert_hash": iis_cert, "ssl_flags": 0}]},
        "listeners": [{"local_address": "0.0.0.0", "port": 443, "pid": 4, "process": "System"}],
        "certificates": [{"thumbprint": f"{i:02X}" * 20, "has_private_key": True, "friendly_name": f"c{i}",
                          "der": fake_der(f"{server}-{i}")} for i in range(5)],
        "vpn_connections": vpn_connections,
        "events": [{"provider": "Microsoft-Windows-RasSstp", "id": 18, "time": "2026-11-25T11:58:00Z",
                    "message": "The certificate bound to HTTP.sys does not match the SSTP configuration."}],
        "probe_errors": [],
    }


FINDINGS = [
    {"id": "SSTP_HASH_MISMATCH", "severity": "critical", "title": "HTTP.sys serves another certificate",
     "detail": "...", "evidence": {"bound": "AB" * 20}, "fixable": True},
    {"id": "IIS_HTTPS_BINDING", "severity": "critical", "title": "IIS has an https binding on 443",
     "detail": "...", "evidence": {"site": "Default Web Site"}, "fixable": True},
]
STEPS = [
    {"action": "remove_iis_binding", "params": {"Site": "Default Web Site", "BindingInformation": "*:443:"},
     "description": "Remove the IIS https binding", "disruptive": False},
    {"action": "bind_sstp_certificate", "params": {"Thumbprint": "3F1C" * 10},
     "description": "Bind the SSTP certificate", "disruptive": True},
]


def add_check(repo: Repository, clock: FakeClock, server: str = "vpn01", *,
              snapshot: dict[str, Any] | None = None, status: str = "unhealthy",
              findings: list[dict[str, Any]] | None = None) -> int:
    now = clock()
    return repo.record_check(
        server=server, actor="U0AAAA1", source="slack", started_at=now - timedelta(seconds=2),
        finished_at=now, status=status, findings=FINDINGS if findings is None else findings,
        snapshot=snapshot,
    )


def add_plan(repo: Repository, clock: FakeClock, server: str = "vpn01", *, ttl: timedelta = TTL) -> int:
    check_id = add_check(repo, clock, server)
    return repo.create_plan(check_id=check_id, server=server, steps=STEPS, fingerprint="F" * 64,
                            requester="U0AAAA1", source="slack", ttl=ttl)


def drive(repo: Repository, plan_id: int, to: PlanState) -> None:
    """Move a fresh PROPOSED plan along the happy path until it is in `to` (PROPOSED/APPROVED/RUNNING)."""
    path = [PlanState.PROPOSED, PlanState.APPROVED, PlanState.RUNNING]
    for current, nxt in itertools.pairwise(path):
        if current == to:
            return
        repo.transition(plan_id, current, nxt, actor="U0BBBB2")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/sub/dir/sstp-bot.db"


@pytest.fixture
def repo(db_url: str, clock: FakeClock) -> Iterator[Repository]:
    repository = Repository(db_url, clock=clock)
    yield repository
    repository.close()
