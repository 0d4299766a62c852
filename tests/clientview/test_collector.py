"""The client view's collector against real loopback servers: each error kind, the SSTP request, the
exact JSON of DESIGN 11, the deadline, and how it rides beside a probe."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from commands.clientview import (
    SSTP_CONTENT_LENGTH,
    collect,
    start_client_view,
)
from commands.lab import pki
from commands.server import ServerConfig

from .loopback import closed_port, silent_server, tls_server

NAME = "vpn.example.com"
HANDSHAKE_KEYS = ["sni", "ok", "error", "tls_version", "cert_sha256", "cert_sha1", "der"]
SSTP_KEYS = ["sni", "ok", "http_status", "error"]
OK_200 = b"HTTP/1.1 200 \r\nContent-Length: 18446744073709551615\r\nServer: Microsoft-HTTPAPI/2.0\r\n\r\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nServer: Microsoft-HTTPAPI/2.0\r\n\r\n"


def clock() -> datetime:
    return datetime(2026, 11, 25, 12, 0, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def cert() -> pki.IssuedCertificate:
    return pki.issue_certificate(common_name=NAME, dns_names=[NAME])


def assert_shape(view: dict[str, Any], endpoint: str, handshakes: int = 2) -> None:
    """DESIGN 11's document: its keys in order, one entry per handshake, error or certificate."""
    assert list(view) == ["endpoint", "collected_at", "handshakes", "sstp"]
    assert view["endpoint"] == endpoint
    assert view["collected_at"] == "2026-11-25T12:00:01Z"
    assert len(view["handshakes"]) == handshakes
    for h in view["handshakes"]:
        assert list(h) == HANDSHAKE_KEYS
        if h["ok"]:
            assert h["error"] is None and h["tls_version"].startswith("TLSv")
            der = base64.b64decode(h["der"])
            assert h["cert_sha256"] == hashlib.sha256(der).hexdigest().upper()
            assert h["cert_sha1"] == hashlib.sha1(der).hexdigest().upper()
        else:
            assert set(h["error"]) == {"kind", "message"} and h["error"]["message"]
            assert h["tls_version"] is h["cert_sha256"] is h["cert_sha1"] is h["der"] is None
    if view["sstp"] is not None:
        assert list(view["sstp"]) == SSTP_KEYS


def kinds(view: dict[str, Any]) -> list[str | None]:
    return [h["error"]["kind"] if h["error"] else None for h in view["handshakes"]]


def test_refused_port_is_unreachable_and_no_sstp_request():
    port = closed_port()
    started = time.monotonic()
    view = collect(f"127.0.0.1:{port}", NAME, 2.0, clock)
    assert time.monotonic() - started < 1.0
    assert_shape(view, f"127.0.0.1:{port}")
    assert kinds(view) == ["unreachable", "unreachable"]
    assert "refused" in view["handshakes"][0]["error"]["message"]
    assert [h["sni"] for h in view["handshakes"]] == [None, NAME]
    assert view["sstp"] is None  # no handshake succeeded


def test_tls_alert_is_a_tls_failure():
    with tls_server(None, OK_200) as (port, _seen):
        view = collect(f"127.0.0.1:{port}", NAME, 2.0, clock)
    assert_shape(view, f"127.0.0.1:{port}")
    assert kinds(view) == ["tls", "tls"]
    assert "alert" in view["handshakes"][0]["error"]["message"].lower() or "failure" in view["handshakes"][0]["error"]["message"].lower()
    assert view["sstp"] is None


def test_a_server_that_accepts_tcp_and_never_answers_times_out_within_connect_timeout():
    with silent_server() as port:
        started = time.monotonic()
        view = collect(f"127.0.0.1:{port}", NAME, 1.0, clock)
        elapsed = time.monotonic() - started
    # One deadline for the whole view: both handshakes wait in parallel, not 2 x 1 s.
    assert 0.95 <= elapsed < 1.6, elapsed
    assert_shape(view, f"127.0.0.1:{port}")
    assert kinds(view) == ["timeout", "timeout"]
    assert "1 s" in view["handshakes"][1]["error"]["message"]
    assert view["sstp"] is None


def test_non_200_answer_is_recorded_with_the_certificate(cert):
    with tls_server(cert.der, NOT_FOUND) as (port, seen):
        view = collect(f"127.0.0.1:{port}", NAME, 2.0, clock)
    assert_shape(view, f"127.0.0.1:{port}")
    assert kinds(view) == [None, None]
    for h in view["handshakes"]:
        assert h["cert_sha256"] == cert.sha256 and h["cert_sha1"] == cert.thumbprint
        assert base64.b64decode(h["der"]) == cert.der
    assert view["sstp"] == {"sni": NAME, "ok": False, "http_status": 404, "error": None}
    assert sorted(seen.sni, key=str) == sorted([None, NAME], key=str)


def test_sstp_duplex_post_is_sent_as_ms_sstp_says_and_200_is_ok(cert):
    with tls_server(cert.der, OK_200) as (port, seen):
        view = collect(f"127.0.0.1:{port}", NAME, 2.0, clock)
    assert view["sstp"] == {"sni": NAME, "ok": True, "http_status": 200, "error": None}
    [request] = seen.requests  # one SSTP request, over the SNI connection only
    head, _, body = request.partition(b"\r\n\r\n")
    assert body == b""  # no body is sent, whatever Content-Length announces
    lines = head.decode("ascii").split("\r\n")
    assert lines[0] == "SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Host"] == NAME
    assert headers["Content-Length"] == SSTP_CONTENT_LENGTH == str(2**64 - 1)
    assert re.fullmatch(r"\{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\}", headers["SSTPCORRELATIONID"])


def test_a_connection_closed_without_an_http_answer_fails_the_sstp_request(cert):
    with tls_server(cert.der, None) as (port, _seen):
        view = collect(f"127.0.0.1:{port}", NAME, 2.0, clock)
    assert kinds(view) == [None, None]
    assert view["sstp"]["ok"] is False and view["sstp"]["http_status"] is None
    assert view["sstp"]["error"]["kind"] == "tls" and "without an HTTP answer" in view["sstp"]["error"]["message"]


def test_without_public_name_one_handshake_carries_the_sstp_request(cert):
    with tls_server(cert.der, OK_200) as (port, seen):
        view = collect(f"127.0.0.1:{port}", None, 2.0, clock)
    assert_shape(view, f"127.0.0.1:{port}", handshakes=1)
    assert view["handshakes"][0]["sni"] is None and view["handshakes"][0]["ok"]
    assert view["sstp"] == {"sni": None, "ok": True, "http_status": 200, "error": None}
    assert seen.sni == [None]


# --- beside the probe -------------------------------------------------------------------------

def server(**kw: Any) -> ServerConfig:
    base: dict[str, Any] = {"name": "vpn01", "host": "127.0.0.1", "public_name": NAME, "connect_timeout": 2.0}
    return ServerConfig(**{**base, **kw})


def probe_output(port: int = 443, use_https: bool = True) -> dict[str, Any]:
    return {"schema": "sstp-bot/snapshot/v1", "sstp": {"listener_port": port, "use_https": use_https}}


def test_client_view_false_starts_nothing_and_stores_null():
    pending = start_client_view(server(client_view=False), clock)
    assert pending._thread is None
    assert pending.attach(probe_output())["client_view"] is None


def test_tls_offload_without_offload_hash_stores_null_and_with_it_collects(cert):
    with tls_server(cert.der, OK_200) as (port, _seen):
        endpoint = f"127.0.0.1:{port}"
        assert start_client_view(server(client_endpoint=endpoint), clock).attach(
            probe_output(use_https=False))["client_view"] is None
        view = start_client_view(server(client_endpoint=endpoint, offload_sha256="A" * 64), clock).attach(
            probe_output(use_https=False))["client_view"]
    assert view["endpoint"] == endpoint and view["handshakes"][0]["cert_sha256"] == cert.sha256


def test_without_client_endpoint_the_probes_sstp_port_is_used(cert):
    # The view starts on host:443 beside the probe; the probe reports another port; the view looks there.
    with tls_server(cert.der, OK_200) as (port, _seen):
        raw = start_client_view(server(), clock).attach(probe_output(port=port))
    assert raw["client_view"]["endpoint"] == f"127.0.0.1:{port}"
    assert raw["client_view"]["sstp"]["ok"] is True
    assert raw["sstp"] == {"listener_port": port, "use_https": True}  # the rest is untouched


def test_client_endpoint_wins_over_the_sstp_port(cert):
    with tls_server(cert.der, OK_200) as (port, _seen):
        raw = start_client_view(server(client_endpoint=f"127.0.0.1:{port}"), clock).attach(probe_output(port=8443))
    assert raw["client_view"]["endpoint"] == f"127.0.0.1:{port}" and raw["client_view"]["sstp"]["ok"]


def test_the_view_runs_beside_the_probe_and_adds_no_time():
    with silent_server() as port:
        started = time.monotonic()
        pending = start_client_view(server(client_endpoint=f"127.0.0.1:{port}", connect_timeout=1.0), clock)
        time.sleep(1.0)  # the probe
        raw = pending.attach(probe_output())
        elapsed = time.monotonic() - started
    assert elapsed < 1.6, elapsed  # not 1 + 1
    assert kinds(raw["client_view"]) == ["timeout", "timeout"]


def test_the_view_never_fails_a_check():
    def broken_clock() -> datetime:
        raise RuntimeError("clock broke")

    raw = start_client_view(server(client_endpoint=f"127.0.0.1:{closed_port()}"), broken_clock).attach(probe_output())
    assert raw["client_view"] is None
    assert start_client_view(server(), clock).attach("not json") == "not json"  # bad output stays the engine's
