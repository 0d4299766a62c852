"""Servers that look unusual but are fine: no critical or warning finding, no plan."""

from __future__ import annotations

from typing import Any

import pytest

from commands.diagnosis import IIS_APP_ID, diagnose
from commands.remediation import plan
from commands.snapshot import parse_snapshot
from tests.engine.builder import (
    NOW,
    Snap,
    add_cert,
    binding,
    cert,
    healthy,
    iis_binding,
    iis_cert,
    problems,
    server,
    sstp_cert,
    use_sstp_cert,
)

LB_SHA256 = "5CE8" + "0" * 60


def offload() -> tuple[Snap, dict[str, Any]]:
    """TLS offloaded on a load balancer: UseHttps=0, SHA256CertificateHash = the LB's certificate."""
    snap = healthy()
    snap["sstp"].update(use_https=False, sha256_hash=LB_SHA256, sha1_hash=None)
    snap["sstp"]["remote_access"]["thumbprint"] = None
    snap["http_sys"]["ip_bindings"] = []
    return snap, {"offload_sha256": LB_SHA256.lower()}


def offload_unverified() -> tuple[Snap, dict[str, Any]]:
    snap, _ = offload()
    return snap, {}


def offload_with_leftover_binding() -> tuple[Snap, dict[str, Any]]:
    snap, kwargs = offload()
    snap["http_sys"]["ip_bindings"] = [binding("0.0.0.0:443", sstp_cert()), binding("[::]:443", sstp_cert())]
    return snap, kwargs


def iis_without_https() -> tuple[Snap, dict[str, Any]]:
    snap = healthy()
    snap["iis"] = {"installed": True, "https_bindings": []}
    snap["listeners"].append({"local_address": "0.0.0.0", "port": 80, "pid": 4, "process": "System"})
    return snap, {}


def no_iis() -> tuple[Snap, dict[str, Any]]:
    snap = healthy()
    snap["iis"] = {"installed": False, "https_bindings": []}
    snap["services"]["W3SVC"] = None
    snap["services"]["WAS"] = None
    return snap, {}


def sstp_on_8443_iis_on_443() -> tuple[Snap, dict[str, Any]]:
    snap = healthy(8443)
    add_cert(snap, iis_cert())
    snap["iis"]["https_bindings"].append(iis_binding(iis_cert()))
    snap["http_sys"]["ip_bindings"] += [
        binding("0.0.0.0:443", iis_cert(), IIS_APP_ID),
        binding("[::]:443", iis_cert(), IIS_APP_ID),
    ]
    snap["http_sys"]["sni_bindings"].append(binding("www.example.com:443", iis_cert(), IIS_APP_ID))
    snap["http_sys"]["url_reservations"].append({"url": "https://*:443/", "sddl": None})
    snap["listeners"].append({"local_address": "0.0.0.0", "port": 443, "pid": 4, "process": "System"})
    snap["listeners"].append({"local_address": "0.0.0.0", "port": 8080, "pid": 2210, "process": "nginx"})
    return snap, {}


def iis_shares_certificate() -> tuple[Snap, dict[str, Any]]:
    snap = healthy()
    snap["iis"]["https_bindings"].append(iis_binding(sstp_cert()))
    return snap, {}


def wildcard_certificate() -> tuple[Snap, dict[str, Any]]:
    snap = use_sstp_cert(healthy(), cert(common_name="*.example.com", dns_names=("*.example.com", "example.com")))
    return snap, {}


def ecdsa_certificate() -> tuple[Snap, dict[str, Any]]:
    return use_sstp_cert(healthy(), cert(key="ec", key_size=256)), {}


def any_purpose_certificate() -> tuple[Snap, dict[str, Any]]:
    return use_sstp_cert(healthy(), cert(server_auth=False, any_purpose=True)), {}


def san_only_match() -> tuple[Snap, dict[str, Any]]:
    c = cert(common_name="VPN01.corp.example.com", dns_names=("VPN01.corp.example.com", "vpn.example.com"))
    return use_sstp_cert(healthy(), c), {}


def only_sha1_in_registry() -> tuple[Snap, dict[str, Any]]:
    snap = healthy()
    snap["sstp"]["sha256_hash"] = None
    return snap, {}


def no_public_name() -> tuple[Snap, dict[str, Any]]:
    return healthy(), {"public_name": None}


def old_events_and_other_sources() -> tuple[Snap, dict[str, Any]]:
    snap = healthy()
    snap["events"] = [
        {"provider": "Microsoft-Windows-RasSstp", "id": 18, "time": "2026-11-23T08:00:00Z", "message": "old"},
        {"provider": "Microsoft-Windows-RasSstp", "id": 20, "time": "2026-11-25T11:00:00Z", "message": "low memory"},
        {"provider": "Schannel", "id": 36887, "time": "2026-11-25T11:00:00Z", "message": "alert 46"},
    ]
    return snap, {}


def expired_certificates_elsewhere_in_store() -> tuple[Snap, dict[str, Any]]:
    snap = healthy()
    old_window = {"not_before": NOW.replace(year=2024), "not_after": NOW.replace(year=2025)}
    add_cert(snap, cert(common_name="old.example.com", **old_window), has_private_key=False)
    add_cert(snap, cert(common_name="vpn.example.com", **old_window))  # the previous SSTP certificate
    return snap, {}


def zero_connections_and_null_ctl() -> tuple[Snap, dict[str, Any]]:
    snap = healthy()
    snap["vpn_connections"] = 0
    for b in snap["http_sys"]["ip_bindings"]:
        b["ctl_store"] = None
        b["app_id"] = b["app_id"].upper()
    return snap, {}


VARIANTS = [
    offload,
    offload_unverified,
    offload_with_leftover_binding,
    iis_without_https,
    no_iis,
    sstp_on_8443_iis_on_443,
    iis_shares_certificate,
    wildcard_certificate,
    ecdsa_certificate,
    any_purpose_certificate,
    san_only_match,
    only_sha1_in_registry,
    no_public_name,
    old_events_and_other_sources,
    expired_certificates_elsewhere_in_store,
    zero_connections_and_null_ctl,
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.__name__)
def test_healthy_variant(variant: Any) -> None:
    snap, kwargs = variant()
    parsed = parse_snapshot(snap)
    srv = server(**kwargs)
    findings = diagnose(parsed, srv, NOW)
    assert problems(findings) == set(), [(f.id, f.severity, f.title) for f in findings]
    assert plan(parsed, findings, srv, NOW) is None
