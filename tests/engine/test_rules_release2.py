"""The rules of DESIGN 4 [2]: client view, JEA endpoint, SSTP's registered URL, usable private keys,
DirectAccess, omitted events, and the candidate a fix binds. Each new ID has a positive fixture and
a near miss (run by tests/engine/test_findings.py's cases too)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from commands.diagnosis import IIS_APP_ID, diagnose
from commands.remediation import assess
from commands.snapshot import parse_snapshot
from commands.version import bot_version
from tests.engine.builder import (
    NOW,
    Snap,
    add_cert,
    binding,
    cert,
    healthy,
    iis_cert,
    only,
    problems,
    server,
    sstp_cert,
    use_sstp_cert,
    with_iis_binding,
)
from tests.engine.test_findings import Case, _run

SSTP_REGISTERED = "HTTPS://+:443/SRA_{BA195980-CD49-458B-9E23-C84EE0ADCD75}/"


def handshake(sni: str | None, c: Any = None, error: tuple[str, str] | None = None) -> dict[str, Any]:
    ok = error is None
    return {
        "sni": sni,
        "ok": ok,
        "error": None if ok else {"kind": error[0], "message": error[1]},  # type: ignore[index]
        "tls_version": "TLSv1.2" if ok else None,
        "cert_sha256": c.sha256 if ok and c else None,
        "cert_sha1": c.thumbprint if ok and c else None,
        "der": None,
    }


def client_view(
    plain: dict[str, Any], with_sni: dict[str, Any], sstp: dict[str, Any] | None = None
) -> Callable[[Snap], None]:
    ok_sstp = {"sni": "vpn.example.com", "ok": True, "http_status": 200, "error": None}

    def mutate(snap: Snap) -> None:
        snap["client_view"] = {
            "endpoint": "vpn01.corp.example.com:443",
            "collected_at": "2026-11-25T11:59:31Z",
            "handshakes": [plain, with_sni],
            "sstp": ok_sstp if sstp is None else sstp,
        }

    return mutate


def _seen(c: Any) -> Callable[[Snap], None]:
    return client_view(handshake(None, c), handshake("vpn.example.com", c))


def _endpoint(version: str | None, name: str = "SstpBot") -> Callable[[Snap], None]:
    def mutate(snap: Snap) -> None:
        snap["endpoint"] = {"configuration_name": name, "module_version": version, "language_mode": "NoLanguage"}

    return mutate


UNREACHABLE = ("unreachable", "connection refused")
CASES_RELEASE2 = [
    Case("CLIENT_CERT_MISMATCH", "critical", _seen(iis_cert()), _seen(sstp_cert())),
    Case("CLIENT_TLS_FAILED", "critical",
         client_view(handshake(None, error=("tls", "alert 40")), handshake("vpn.example.com", sstp_cert())),
         _seen(sstp_cert())),
    Case("CLIENT_UNREACHABLE", "warning",
         client_view(handshake(None, error=UNREACHABLE), handshake("vpn.example.com", error=("timeout", "10 s")), None),
         client_view(handshake(None, error=UNREACHABLE), handshake("vpn.example.com", sstp_cert()))),
    Case("SSTP_HANDSHAKE_REFUSED", "critical",
         client_view(handshake(None, sstp_cert()), handshake("vpn.example.com", sstp_cert()),
                     {"sni": "vpn.example.com", "ok": False, "http_status": 404, "error": None}),
         _seen(sstp_cert())),
    Case("ENDPOINT_OUTDATED", "critical", _endpoint("0.0.0-old"), _endpoint(bot_version())),
]


@pytest.mark.parametrize("case", CASES_RELEASE2, ids=lambda c: c.finding_id)
def test_positive_and_near_miss(case: Case) -> None:
    found = [f for f in _run(case.positive) if f.id == case.finding_id]
    assert found and {f.severity for f in found} == {case.severity}
    assert all(f.title and len(f.detail) > 40 and f.evidence for f in found)
    assert problems(_run(case.near_miss)) == set()


def _assess(snap: Snap, **kwargs: Any) -> tuple[list[Any], Any]:
    return assess(parse_snapshot(snap), server(**kwargs), NOW)


# ---------------------------------------------------------------------------------------------- client view


def test_no_client_view_no_client_findings() -> None:
    snap = healthy()
    snap["client_view"] = None
    assert _assess(snap)[0] == []


def test_client_mismatch_explained_by_the_probe_is_fixed_by_the_binding_plan() -> None:
    snap = with_iis_binding(healthy())
    _seen(iis_cert())(snap)
    findings, p = _assess(snap)
    assert only(findings, "CLIENT_CERT_MISMATCH").fixable and p is not None
    assert "bind_sstp_certificate" in [s.action for s in p.steps]


def test_client_mismatch_the_probe_cannot_explain_gets_guidance() -> None:
    snap = healthy()
    _seen(iis_cert())(snap)  # a load balancer in front serves another certificate
    findings, p = _assess(snap)
    f = only(findings, "CLIENT_CERT_MISMATCH")
    assert not f.fixable and p is None and "load balancer" in f.detail


def test_offload_mode_compares_with_offload_sha256() -> None:
    lb = cert(common_name="vpn.example.com")
    snap = healthy()
    snap["sstp"]["use_https"] = False
    snap["sstp"]["sha256_hash"] = lb.sha256
    _seen(lb)(snap)
    assert "CLIENT_CERT_MISMATCH" not in {f.id for f in _assess(snap, offload_sha256=lb.sha256)[0]}
    _seen(iis_cert())(snap)
    findings = _assess(snap, offload_sha256=lb.sha256)[0]
    assert "CLIENT_CERT_MISMATCH" in {f.id for f in findings}


def test_refused_sstp_request_is_fixed_with_the_restart_when_sstp_is_not_registered() -> None:
    snap = healthy()
    snap["http_sys"]["registered_urls"] = ["HTTPS://+:443/ADFS/"]
    client_view(handshake(None, sstp_cert()), handshake("vpn.example.com", sstp_cert()),
                {"sni": "vpn.example.com", "ok": False, "http_status": 404, "error": None})(snap)
    findings, p = _assess(snap)
    assert only(findings, "SSTP_HANDSHAKE_REFUSED").fixable
    assert p is not None and [s.action for s in p.steps] == ["restart_remoteaccess"]


# ---------------------------------------------------------------------------------------------- listener


def test_sstp_listens_when_its_url_is_registered_case_insensitively() -> None:
    snap = healthy()
    snap["http_sys"]["registered_urls"] = [SSTP_REGISTERED.lower(), "HTTPS://+:443/ADFS/"]
    snap["listeners"] = []  # the registration decides, not the PID 4 listener
    assert problems(_assess(snap)[0]) == set()


def test_pid4_listener_without_sstp_url_is_not_listening() -> None:
    snap = healthy()
    snap["http_sys"]["registered_urls"] = ["HTTPS://+:443/ADFS/LS/"]
    f = only(_assess(snap)[0], "SSTP_NOT_LISTENING")
    assert f.fixable and f.evidence["registered_urls"] == ["HTTPS://+:443/ADFS/LS/"]


def test_null_registered_urls_falls_back_on_the_listener_rule() -> None:
    snap = healthy()
    snap["http_sys"]["registered_urls"] = None
    assert problems(_assess(snap)[0]) == set()
    snap["listeners"] = []
    assert "SSTP_NOT_LISTENING" in problems(_assess(snap)[0])


# ---------------------------------------------------------------------------------------------- private key


def test_private_key_that_cannot_be_opened() -> None:
    snap = healthy()
    snap["certificates"][0]["private_key_usable"] = False
    other = cert(common_name="vpn.example.com")
    add_cert(snap, other)
    snap["certificates"][-1]["private_key_usable"] = True
    findings, p = _assess(snap)
    f = only(findings, "SSTP_CERT_NO_PRIVATE_KEY")
    assert "cannot open" in f.title and f.fixable
    assert p is not None and p.steps[-1].params == {"Thumbprint": other.thumbprint}


def test_candidate_with_unusable_key_is_never_chosen() -> None:
    snap = use_sstp_cert(healthy(), cert(common_name="vpn.example.com", not_after=NOW.replace(day=1)))
    add_cert(snap, cert(common_name="vpn.example.com", key="ec", key_size=521))  # P-521: unusable
    add_cert(snap, cert(common_name="vpn.example.com", key_size=1024, signature_hash="md5"))  # MD5: unusable
    add_cert(snap, cert(common_name="other.example.com"))  # the wrong name
    add_cert(snap, cert(common_name="vpn.example.com", dns_names=("other.example.com",)))  # CN only: no match
    findings, p = _assess(snap)
    assert "SSTP_CERT_EXPIRED" in {f.id for f in findings} and p is None
    good = cert(common_name="vpn.example.com", key="ec", key_size=384)
    add_cert(snap, good)
    findings, p = _assess(snap)
    assert p is not None and p.steps[-1].params == {"Thumbprint": good.thumbprint}


# ---------------------------------------------------------------------------------------------- DirectAccess


def test_directaccess_never_changes_the_certificate_or_deletes_reservations() -> None:
    snap = use_sstp_cert(healthy(), cert(common_name="vpn.example.com", not_after=NOW.replace(day=1)), keep_old=True)
    snap["sstp"]["remote_access"]["directaccess"] = True
    snap["http_sys"]["url_reservations"].append({"url": "https://+:443/", "sddl": None})
    findings, p = _assess(snap)
    assert p is None
    for fid in ("SSTP_CERT_EXPIRED", "URLACL_CONFLICT"):
        f = only(findings, fid)
        assert not f.fixable and "DirectAccess" in f.detail
    snap["sstp"]["remote_access"]["directaccess"] = False
    findings, p = _assess(snap)
    assert p is not None and {"bind_sstp_certificate", "delete_url_reservation"} <= {s.action for s in p.steps}


def _directaccess_iis(*, both_wildcards: bool) -> Snap:
    """The classic IIS error (IIS owns 0.0.0.0:443, and [::]:443 too when `both_wildcards`) on a
    DirectAccess server whose store holds a valid renewal of the SSTP certificate."""
    snap = with_iis_binding(healthy())
    if both_wildcards:
        snap["http_sys"]["ip_bindings"][1] = binding("[::]:443", iis_cert(), IIS_APP_ID)
    add_cert(snap, cert(not_after=sstp_cert().not_after + timedelta(days=400)))
    snap["sstp"]["remote_access"]["directaccess"] = True
    return snap


@pytest.mark.parametrize("both_wildcards", [True, False], ids=["both-wildcards", "ipv4-only"])
def test_directaccess_with_a_renewal_binds_the_current_certificate_again(both_wildcards: bool) -> None:
    """DESIGN 4 [2] and 5 [2]: the renewal is not bound (DirectAccess), but every wildcard binding the
    plan deletes is restored with the certificate SSTP already uses."""
    findings, p = _assess(_directaccess_iis(both_wildcards=both_wildcards))
    assert p is not None
    deleted = ["0.0.0.0:443", "[::]:443"] if both_wildcards else ["0.0.0.0:443"]
    assert [(s.action, s.params) for s in p.steps] == [
        ("remove_iis_binding", {"Site": "Default Web Site", "BindingInformation": "*:443:"}),
        ("restart_iis", {}),
        *[("delete_httpsys_binding", {"Endpoint": e}) for e in deleted],
        ("bind_sstp_certificate", {"Thumbprint": sstp_cert().thumbprint}),
    ]
    assert only(findings, "SSTP_HASH_MISMATCH").fixable and only(findings, "IIS_HTTPS_BINDING").fixable
    renewal = only(findings, "SSTP_CERT_RENEWAL_NOT_BOUND")
    assert not renewal.fixable and "DirectAccess" in renewal.detail


def test_directaccess_without_a_valid_certificate_to_keep_deletes_nothing() -> None:
    """The SSTP certificate expired: binding the renewal would change it (DirectAccess), binding the
    expired one again would not help, so the plan deletes no binding it could not restore."""
    snap = _directaccess_iis(both_wildcards=True)
    use_sstp_cert(snap, cert(not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=1)), rebind=False)
    findings, p = _assess(snap)
    assert p is None
    for fid in ("SSTP_HASH_MISMATCH", "IIS_HTTPS_BINDING", "SSTP_CERT_EXPIRED", "SSTP_CERT_RENEWAL_NOT_BOUND"):
        f = only(findings, fid)
        assert not f.fixable and "DirectAccess" in f.detail, fid
    assert {f.id for f in findings if f.id == "HTTPSYS_FOREIGN_BINDING" and f.fixable} == set()


# ---------------------------------------------------------------------------------------------- events, endpoint


def test_events_omitted_is_mentioned() -> None:
    snap = healthy()
    snap["events"].append({"provider": "Microsoft-Windows-RasSstp", "id": 18, "time": "2026-11-25T11:00:00Z",
                           "message": "x"})
    snap["events_omitted"] = 40
    f = only(_assess(snap)[0], "SSTP_ERROR_EVENTS")
    assert "40 more" in f.detail and f.evidence["omitted"] == 40


def test_outdated_endpoint_refuses_every_fix_with_reinstall_guidance() -> None:
    snap = with_iis_binding(healthy())
    _endpoint(None)(snap)
    findings, p = _assess(snap)
    assert p is None
    assert "Install-SstpBotEndpoint.ps1" in only(findings, "ENDPOINT_OUTDATED").detail
    assert "ENDPOINT_OUTDATED" in only(findings, "SSTP_HASH_MISMATCH").detail
    assert not any(f.fixable for f in findings)


@pytest.mark.parametrize("endpoint", [None, {"configuration_name": "Microsoft.PowerShell", "module_version": None,
                                             "language_mode": "FullLanguage"}])
def test_default_endpoint_is_never_outdated(endpoint: Any) -> None:
    snap = healthy()
    snap["endpoint"] = endpoint
    assert diagnose(parse_snapshot(snap), server(), NOW) == []


def test_release2_fields_are_optional_and_validated() -> None:
    from commands.errors import SnapshotError

    parsed = parse_snapshot(healthy())
    assert parsed.client_view is None and parsed.endpoint is None and parsed.events_omitted is None
    assert parsed.http_sys is not None and parsed.http_sys.registered_urls is None
    snap = healthy()
    snap["events_omitted"] = "many"
    with pytest.raises(SnapshotError, match="events_omitted"):
        parse_snapshot(snap)


def test_fingerprint_follows_the_release2_fields_and_keeps_v1_values() -> None:
    from commands.remediation import fingerprint

    snap = healthy()
    before = fingerprint(snap)
    snap["client_view"] = None
    snap["events_omitted"] = 3
    assert fingerprint(snap) == before  # absent or irrelevant [2] fields: same value as before
    snap["sstp"]["remote_access"]["directaccess"] = True
    assert fingerprint(snap) != before
    snap = healthy()
    snap["certificates"][0]["private_key_usable"] = False
    assert fingerprint(snap) != before


def test_client_failure_explained_but_not_fixable_points_at_the_explanation() -> None:
    snap = healthy()
    snap["certificates"][0]["has_private_key"] = False  # the only certificate for the name: no candidate
    client_view(handshake(None, error=("tls", "alert 40")), handshake("vpn.example.com", error=("tls", "alert 40")),
                None)(snap)
    snap["client_view"]["sstp"] = None
    findings, p = _assess(snap)
    f = only(findings, "CLIENT_TLS_FAILED")
    assert p is None and not f.fixable and "SSTP_CERT_NO_PRIVATE_KEY" in f.detail
