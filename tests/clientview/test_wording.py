"""The one line the reports show for a client view: match, mismatch with both hashes, SNI-only
differences, failures, and the fix verdict."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from commands.clientview import client_view_line, client_view_state, fix_verdict_line
from commands.lab import pki


@pytest.fixture(scope="module")
def certs() -> tuple[pki.IssuedCertificate, pki.IssuedCertificate]:
    sstp = pki.issue_certificate(common_name="vpn.example.com", dns_names=["vpn.example.com"])
    iis = pki.issue_certificate(common_name="www.example.com", dns_names=["www.example.com"])
    return sstp, iis


def hs(cert: pki.IssuedCertificate | None, sni: str | None = None, error: str = "connection refused") -> dict[str, Any]:
    if cert is None:
        return {"sni": sni, "ok": False, "error": {"kind": "unreachable", "message": error}, "tls_version": None,
                "cert_sha256": None, "cert_sha1": None, "der": None}
    return {"sni": sni, "ok": True, "error": None, "tls_version": "TLSv1.3", "cert_sha256": cert.sha256,
            "cert_sha1": cert.thumbprint, "der": base64.b64encode(cert.der).decode()}


def snapshot(sstp_cert: pki.IssuedCertificate, handshakes: list[dict[str, Any]], status: int | None = 200,
             use_https: bool = True) -> dict[str, Any]:
    sstp = None if status is None else {"sni": "vpn.example.com", "ok": status == 200, "http_status": status, "error": None}
    return {
        "sstp": {"sha256_hash": sstp_cert.sha256, "sha1_hash": sstp_cert.thumbprint, "use_https": use_https},
        "client_view": {"endpoint": "vpn01:443", "collected_at": "2026-11-25T12:00:01Z", "handshakes": handshakes,
                        "sstp": sstp},
    }


def test_match_is_one_short_line_in_slack_and_full_in_the_terminal(certs):
    sstp, _ = certs
    snap = snapshot(sstp, [hs(sstp), hs(sstp, "vpn.example.com")])
    expires = sstp.not_after.strftime("%Y-%m-%d")
    assert client_view_line(snap, full_hashes=False) == (
        f"Clients get CN=vpn.example.com, {sstp.sha256[:4]}…, expires {expires}: matches SSTP; SSTP answers 200")
    assert client_view_line(snap) == (
        f"Clients get CN=vpn.example.com, {sstp.sha256}, expires {expires}: matches SSTP; SSTP answers 200")
    assert client_view_state(snap) == "ok"
    assert fix_verdict_line(snap) is not None and fix_verdict_line(snap).startswith("Clients now receive the SSTP certificate")


def test_mismatch_shows_both_hashes_in_full_even_in_slack(certs):
    sstp, iis = certs
    snap = snapshot(sstp, [hs(iis), hs(iis, "vpn.example.com")])
    line = client_view_line(snap, full_hashes=False)
    assert line is not None
    assert f"CN=www.example.com, {iis.sha256}," in line and f"SSTP expects {sstp.sha256}" in line
    assert client_view_state(snap) == "bad"
    assert fix_verdict_line(snap) == f"Clients still do not get a working SSTP endpoint: {client_view_line(snap)}"


def test_an_sni_only_difference_names_each_handshake(certs):
    sstp, iis = certs
    line = client_view_line(snapshot(sstp, [hs(sstp), hs(iis, "vpn.example.com")], status=404))
    assert line is not None
    assert f"{sstp.sha256}, expires " in line and "(without SNI): matches SSTP" in line
    assert f"{iis.sha256}, expires " in line and "(with SNI vpn.example.com): SSTP expects" in line
    assert line.endswith("SSTP_DUPLEX_POST got HTTP 404, not 200")


def test_failures_and_absence(certs):
    sstp, _ = certs
    down = snapshot(sstp, [hs(None), hs(None, "vpn.example.com")], status=None)
    assert client_view_line(down) == "Clients cannot get a TLS session from vpn01:443: connection refused"
    partial = client_view_line(snapshot(sstp, [hs(sstp), hs(None, "vpn.example.com", "alert")]))
    assert partial is not None and "with SNI vpn.example.com: alert" in partial
    assert client_view_line({"sstp": {}}) is None and client_view_line(None) is None
    assert client_view_line({"client_view": None}) is None and fix_verdict_line({"client_view": None}) is None


def test_offload_compares_with_the_offload_hash(certs):
    sstp, iis = certs
    snap = snapshot(sstp, [hs(iis), hs(iis, "vpn.example.com")], use_https=False)
    assert client_view_line(snap, offload_sha256=iis.sha256.lower()) is not None
    assert "matches the offload hash" in (client_view_line(snap, offload_sha256=iis.sha256) or "")
    assert f"offload_sha256 is {sstp.sha256}" in (client_view_line(snap, offload_sha256=sstp.sha256) or "")
    assert "load balancer's certificate" in (client_view_line(snap) or "")
