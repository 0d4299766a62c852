"""Each error kind the client view records gives its finding (DESIGN 4 [2]) within the timeout.

The CLIENT_* rules are the engine's: until they are merged these tests skip (one reason, stated),
the JSON they rest on being asserted in test_collector.py."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from commands.clientview import start_client_view
from commands.engine import evaluate
from commands.lab.scenarios import build_state, load_scenario
from commands.lab.twin import RrasTwin
from commands.server import ServerConfig

from .loopback import closed_port, silent_server, tls_server

CLIENT_IDS = {"CLIENT_CERT_MISMATCH", "CLIENT_TLS_FAILED", "CLIENT_UNREACHABLE", "SSTP_HANDSHAKE_REFUSED"}
OK_200 = b"HTTP/1.1 200 \r\nContent-Length: 18446744073709551615\r\n\r\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
TIMEOUT = 1.0


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="module")
def healthy() -> tuple[RrasTwin, dict[str, Any]]:
    """A healthy server's probe output (its own findings: none)."""
    twin = RrasTwin(build_state(load_scenario("healthy").servers[0]))
    return twin, twin.probe()


def server(port: int) -> ServerConfig:
    return ServerConfig(name="vpn-healthy", host="127.0.0.1", public_name="vpn.example.com",
                        client_endpoint=f"127.0.0.1:{port}", connect_timeout=TIMEOUT)


def client_findings(port: int, probe: dict[str, Any]) -> tuple[set[str], float]:
    started = time.monotonic()
    raw = start_client_view(server(port), now).attach(probe)
    elapsed = time.monotonic() - started
    result = evaluate(raw, server(port), now())
    assert result.error_kind is None, result.error_message
    return {f.id for f in result.findings} & CLIENT_IDS, elapsed


def sstp_der(twin: RrasTwin) -> bytes:
    s = twin.state
    return next(c.der for c in s.certificates if c.sha256 == s.sha256_hash)


def test_refused_port_is_client_unreachable(healthy):
    ids, elapsed = client_findings(closed_port(), healthy[1])
    assert ids == {"CLIENT_UNREACHABLE"} and elapsed < TIMEOUT


def test_tls_alert_is_client_tls_failed(healthy):
    with tls_server(None, OK_200) as (port, _):
        ids, elapsed = client_findings(port, healthy[1])
    assert ids == {"CLIENT_TLS_FAILED"} and elapsed < TIMEOUT


def test_silent_server_is_client_unreachable_within_the_timeout(healthy):
    # TCP accepted, then nothing: kind "timeout" in the JSON; the engine judges it like a dropped
    # connection (a middlebox or firewall may accept TCP), CLIENT_UNREACHABLE.
    with silent_server() as port:
        ids, elapsed = client_findings(port, healthy[1])
    assert ids == {"CLIENT_UNREACHABLE"} and elapsed < TIMEOUT + 0.5


def test_non_200_is_sstp_handshake_refused(healthy):
    twin, probe = healthy
    with tls_server(sstp_der(twin), NOT_FOUND) as (port, _):
        ids, _elapsed = client_findings(port, probe)
    assert ids == {"SSTP_HANDSHAKE_REFUSED"}


def test_another_certificate_is_client_cert_mismatch_and_the_right_one_nothing(healthy):
    twin, probe = healthy
    other = RrasTwin(build_state(load_scenario("iis-binding").servers[0]))
    iis_der = next(c.der for c in other.state.certificates if c.sha256 != other.state.sha256_hash)
    with tls_server(iis_der, OK_200) as (port, _):
        ids, _elapsed = client_findings(port, probe)
    assert ids == {"CLIENT_CERT_MISMATCH"}
    with tls_server(sstp_der(twin), OK_200) as (port, _):
        ids, _elapsed = client_findings(port, probe)
    assert ids == set()
