"""One positive fixture and one near miss for every finding ID of DESIGN 4."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from commands.diagnosis import ALL_FINDING_IDS, IIS_APP_ID, SSTP_APP_ID, diagnose
from commands.snapshot import parse_snapshot
from tests.engine.builder import (
    ADFS_APP_ID,
    NOW,
    Snap,
    add_cert,
    binding,
    cert,
    healthy,
    iis_binding,
    iis_cert,
    only,
    problems,
    server,
    sstp_cert,
    use_sstp_cert,
    with_iis_binding,
)


@dataclass
class Case:
    finding_id: str
    severity: str
    positive: Callable[[Snap], Any]
    near_miss: Callable[[Snap], Any]
    server_positive: dict[str, Any] = field(default_factory=dict)
    server_near_miss: dict[str, Any] = field(default_factory=dict)
    near_miss_healthy: bool = True  # the near miss has no critical/warning finding at all


def _set(path: str, value: Any) -> Callable[[Snap], None]:
    def mutate(snap: Snap) -> None:
        node: Any = snap
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node[key]
        node[keys[-1]] = value

    return mutate


def _chain(*fns: Callable[[Snap], Any]) -> Callable[[Snap], None]:
    def mutate(snap: Snap) -> None:
        for fn in fns:
            fn(snap)

    return mutate


def _hash_mismatch(snap: Snap) -> None:
    add_cert(snap, iis_cert())
    snap["http_sys"]["ip_bindings"][0]["cert_hash"] = iis_cert().thumbprint


def _hash_case_differs(snap: Snap) -> None:
    b = snap["http_sys"]["ip_bindings"][1]
    b["cert_hash"] = b["cert_hash"].lower()
    b["app_id"] = b["app_id"].upper().strip("{}")


def _iis_other_port(snap: Snap) -> None:
    add_cert(snap, iis_cert())
    snap["iis"]["https_bindings"].append(iis_binding(iis_cert(), info="*:8443:"))
    snap["http_sys"]["ip_bindings"].append(binding("0.0.0.0:8443", iis_cert(), IIS_APP_ID))


def _adfs_binding(snap: Snap) -> None:
    add_cert(snap, iis_cert())
    snap["http_sys"]["ip_bindings"].append(binding("10.0.0.5:443", iis_cert(), ADFS_APP_ID))


def _sstp_owned_specific_ip(*, other: bool) -> Callable[[Snap], None]:
    """A 10.0.0.5:443 binding under SSTP's AppId, with another certificate or with SSTP's own."""

    def mutate(snap: Snap) -> None:
        add_cert(snap, iis_cert())
        snap["http_sys"]["ip_bindings"].append(binding("10.0.0.5:443", iis_cert() if other else sstp_cert(), SSTP_APP_ID))

    return mutate


def _iis_owns_same_cert(snap: Snap) -> None:
    snap["http_sys"]["ip_bindings"][1]["app_id"] = IIS_APP_ID


def _drop_ipv6_binding(snap: Snap) -> None:
    del snap["http_sys"]["ip_bindings"][1]


OFFLOAD_SHA256 = "AB" * 32


def _offload(sha256: str | None) -> Callable[[Snap], None]:
    def mutate(snap: Snap) -> None:
        snap["sstp"].update(use_https=False, sha256_hash=sha256, sha1_hash=None)
        snap["sstp"]["remote_access"]["thumbprint"] = None
        snap["http_sys"]["ip_bindings"] = []

    return mutate


def _sni(endpoint: str) -> Callable[[Snap], None]:
    return lambda snap: snap["http_sys"]["sni_bindings"].append(binding(endpoint, sstp_cert(), IIS_APP_ID))


def _url(url: str) -> Callable[[Snap], None]:
    return lambda snap: snap["http_sys"]["url_reservations"].append({"url": url, "sddl": "D:(A;;GX;;;WD)"})


def _remove_sstp_cert_from_store(snap: Snap) -> None:
    snap["certificates"] = [c for c in snap["certificates"] if c["thumbprint"] != sstp_cert().thumbprint]


def _sha256_null(snap: Snap) -> None:
    snap["sstp"]["sha256_hash"] = None


def _sstp_cert(**kwargs: Any) -> Callable[[Snap], None]:
    has_key = kwargs.pop("has_private_key", True)
    return lambda snap: use_sstp_cert(snap, cert(**kwargs), has_private_key=has_key)


def _renewal(snap: Snap) -> None:
    add_cert(snap, cert(not_before=NOW - timedelta(days=2), not_after=NOW + timedelta(days=4000)))


def _renewal_other_name(snap: Snap) -> None:
    add_cert(snap, cert(common_name="mail.example.com", not_after=NOW + timedelta(days=4000)))


def _unrelated_cert_without_key(snap: Snap) -> None:
    add_cert(snap, cert(common_name="old.example.com"), has_private_key=False)


def _services(status: str) -> Callable[[Snap], None]:
    def mutate(snap: Snap) -> None:
        snap["services"]["RemoteAccess"]["status"] = status
        if status.lower() != "running":
            snap["listeners"] = []

    return mutate


def _listener(port: int, pid: int, process: str) -> Callable[[Snap], None]:
    return lambda snap: snap["listeners"].append({"local_address": "0.0.0.0", "port": port, "pid": pid, "process": process})


def _event(provider: str, event_id: int, age: timedelta) -> Callable[[Snap], None]:
    moment = (NOW - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    return lambda snap: snap["events"].append(
        {"provider": provider, "id": event_id, "time": moment, "message": "SSTP event"}
    )


CASES = [
    Case("SSTP_HASH_MISMATCH", "critical", _hash_mismatch, _hash_case_differs),
    Case("SSTP_IP_BINDING_MISMATCH", "critical", _sstp_owned_specific_ip(other=True),
         _sstp_owned_specific_ip(other=False)),
    Case("IIS_HTTPS_BINDING", "critical", with_iis_binding, _iis_other_port),
    Case("HTTPSYS_FOREIGN_BINDING", "critical", _adfs_binding,
         lambda snap: snap["http_sys"]["ip_bindings"].append(binding("0.0.0.0:8443", iis_cert(), ADFS_APP_ID))),
    Case("HTTPSYS_BINDING_MISSING", "critical", _drop_ipv6_binding, _offload(OFFLOAD_SHA256),
         server_near_miss={"offload_sha256": OFFLOAD_SHA256}),
    Case("HTTPSYS_SNI_BINDING", "warning", _sni("vpn.example.com:443"), _sni("vpn.example.com:8443")),
    # DESIGN 4 [2]: only the port's root reservations conflict; IP-HTTPS and other paths never do.
    Case("URLACL_CONFLICT", "critical", _url("https://+:443/"),
         _chain(_url("https://+:443/SRA_{BA195980-CD49-458B-9E23-C84EE0ADCD75}/"),
                _url("https://+:443/C574AC30-5794-4AEE-B1BB-6651C5315029/"),
                _url("https://+:443/adfs/"),
                _url("http://+:80/Temporary_Listen_Addresses/"))),
    Case("SSTP_CERT_NOT_FOUND", "critical", _remove_sstp_cert_from_store, _sha256_null),
    Case("SSTP_CERT_EXPIRED", "critical", _sstp_cert(not_after=NOW - timedelta(days=1)),
         _sstp_cert(not_after=NOW + timedelta(days=1)), near_miss_healthy=False),
    Case("SSTP_CERT_EXPIRING", "warning", _sstp_cert(not_after=NOW + timedelta(days=10)),
         _sstp_cert(not_after=NOW + timedelta(days=31))),
    Case("SSTP_CERT_RENEWAL_NOT_BOUND", "warning", _renewal, _renewal_other_name),
    Case("SSTP_CERT_NO_PRIVATE_KEY", "critical", _sstp_cert(has_private_key=False), _unrelated_cert_without_key),
    Case("SSTP_CERT_EKU", "critical", _sstp_cert(server_auth=False, client_auth=True),
         _sstp_cert(server_auth=False, any_purpose=True)),
    Case("SSTP_CERT_NAME_MISMATCH", "critical", lambda snap: None,
         _sstp_cert(common_name="*.example.com", dns_names=("*.example.com",)),
         server_positive={"public_name": "vpn.example.org"}),
    Case("SSTP_CERT_WEAK", "warning", _sstp_cert(key_size=1024), _sstp_cert(key="ec", key_size=256)),
    Case("SSTP_CERT_UNUSABLE", "critical", _sstp_cert(key="ec", key_size=521), _sstp_cert(key="ec", key_size=384)),
    Case("SSTP_CERT_NO_REVOCATION_URL", "warning", _sstp_cert(crl_url=None, ocsp_url=None),
         _sstp_cert(crl_url=None)),
    Case("SSTP_OFFLOAD_HASH", "critical", _offload("CD" * 32), _offload(OFFLOAD_SHA256),
         server_positive={"offload_sha256": OFFLOAD_SHA256}, server_near_miss={"offload_sha256": OFFLOAD_SHA256}),
    Case("REMOTEACCESS_STOPPED", "critical", _services("Stopped"), _services("running")),
    Case("SSTP_NOT_LISTENING", "critical", _set("listeners", []),
         _set("listeners", [{"local_address": "::", "port": 443, "pid": 4, "process": "System"}])),
    Case("PORT_OWNED_BY_OTHER_PROCESS", "critical", _listener(443, 2210, "nginx"), _listener(8080, 2210, "nginx")),
    Case("SSTP_ERROR_EVENTS", "warning", _event("Microsoft-Windows-RasSstp", 18, timedelta(hours=1)),
         _chain(_event("Microsoft-Windows-RasSstp", 18, timedelta(hours=25)),
                _event("Microsoft-Windows-RasSstp", 20, timedelta(hours=1)))),
    Case("NOT_ELEVATED", "critical", _set("host.is_admin", False), _set("host.is_admin", None)),
    Case("PROBE_INCOMPLETE", "warning", _set("probe_errors", [{"section": "iis", "message": "access denied"}]),
         _set("probe_errors", [])),
]


def test_every_design_finding_has_a_case() -> None:
    from tests.engine.test_rules_release2 import CASES_RELEASE2

    design_ids = set(ALL_FINDING_IDS) - {"CERTIFICATE_UNREADABLE"}  # our addition, tested in test_snapshot
    assert {case.finding_id for case in CASES} | {case.finding_id for case in CASES_RELEASE2} == design_ids


def _run(mutate: Callable[[Snap], Any], **server_kwargs: Any) -> list[Any]:
    snap = healthy()
    mutate(snap)
    return diagnose(parse_snapshot(snap), server(**server_kwargs), NOW)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.finding_id)
def test_positive(case: Case) -> None:
    findings = _run(case.positive, **case.server_positive)
    finding = [f for f in findings if f.id == case.finding_id]
    assert finding, f"{case.finding_id} not found in {[f.id for f in findings]}"
    assert {f.severity for f in finding} == {case.severity}
    for f in finding:
        assert f.title and "\n" not in f.title
        assert len(f.detail) > 40
        assert f.evidence


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.finding_id)
def test_near_miss(case: Case) -> None:
    findings = _run(case.near_miss, **case.server_near_miss)
    assert case.finding_id not in {f.id for f in findings}
    if case.near_miss_healthy:
        assert problems(findings) == set(), [f.id for f in findings if f.severity != "info"]


def test_healthy_snapshot_has_no_findings() -> None:
    assert _run(lambda snap: None) == []


def test_classic_iis_case_is_fixable_and_explained() -> None:
    findings = _run(with_iis_binding)
    assert problems(findings) == {"IIS_HTTPS_BINDING", "SSTP_HASH_MISMATCH", "HTTPSYS_FOREIGN_BINDING"}
    assert all(f.fixable for f in findings)
    mismatch = only(findings, "SSTP_HASH_MISMATCH")
    assert "only creates its HTTP.sys binding where none exists" in mismatch.detail
    assert mismatch.evidence["bindings"][0]["endpoint"] == "0.0.0.0:443"
    assert mismatch.evidence["bindings"][0]["cert_hash"] == iis_cert().thumbprint
    iis = only(findings, "IIS_HTTPS_BINDING")
    assert iis.evidence["site"] == "Default Web Site"
    assert iis.evidence["binding_information"] == "*:443:"


def test_expired_warning_days_follow_server_config() -> None:
    findings = _run(_sstp_cert(not_after=NOW + timedelta(days=40)), cert_expiry_warning_days=45)
    assert only(findings, "SSTP_CERT_EXPIRING").evidence["days_left"] == 40


def test_not_yet_valid_certificate_is_expired_finding() -> None:
    findings = _run(_sstp_cert(not_before=NOW + timedelta(days=1), not_after=NOW + timedelta(days=300)))
    assert only(findings, "SSTP_CERT_EXPIRED").severity == "critical"


def test_name_mismatch_not_evaluated_without_public_name() -> None:
    findings = _run(_sstp_cert(common_name="other.example.net"), public_name=None)
    assert "SSTP_CERT_NAME_MISMATCH" not in {f.id for f in findings}


def test_weak_sha1_signature() -> None:
    findings = _run(_sstp_cert(signature_hash="sha1"))
    assert "SHA1" in only(findings, "SSTP_CERT_WEAK").title


def test_md5_signature_is_unusable() -> None:
    """DESIGN 4 [2]: an MD5 signature is SSTP_CERT_UNUSABLE, no longer SSTP_CERT_WEAK."""
    findings = _run(_sstp_cert(signature_hash="md5"))
    assert only(findings, "SSTP_CERT_UNUSABLE").evidence["signature_hash"] == "md5"
    assert "SSTP_CERT_WEAK" not in {f.id for f in findings}


def test_missing_remote_access_service() -> None:
    findings = _run(_chain(_set("services.RemoteAccess", None), _set("listeners", [])))
    f = only(findings, "REMOTEACCESS_STOPPED")
    assert not f.fixable


def test_schannel_36870_counts() -> None:
    findings = _run(_event("Schannel", 36870, timedelta(minutes=5)))
    assert only(findings, "SSTP_ERROR_EVENTS").evidence["count"] == 1


def test_not_elevated_blocks_fixes() -> None:
    findings = _run(_chain(with_iis_binding, _set("host.is_admin", False)))
    assert "NOT_ELEVATED" in problems(findings)
    assert not any(f.fixable for f in findings)
    assert "not elevated" in only(findings, "IIS_HTTPS_BINDING").detail


def test_foreign_owner_with_the_sstp_certificate_is_info_only() -> None:
    findings = _run(_iis_owns_same_cert)
    assert problems(findings) == set()
    f = only(findings, "HTTPSYS_FOREIGN_BINDING")
    assert f.severity == "info"
    assert f.evidence["owner"] == "IIS"
    assert not f.fixable


def test_iis_binding_sharing_the_sstp_certificate_is_info_only() -> None:
    def share(snap: Snap) -> None:
        snap["iis"]["https_bindings"].append(iis_binding(sstp_cert()))

    findings = _run(share)
    assert problems(findings) == set()
    assert only(findings, "IIS_HTTPS_BINDING").severity == "info"


def test_iis_binding_without_hash_uses_the_http_sys_binding() -> None:
    def no_hash(snap: Snap) -> None:
        with_iis_binding(snap)
        snap["iis"]["https_bindings"][0]["cert_hash"] = None

    findings = _run(no_hash)
    f = only(findings, "IIS_HTTPS_BINDING")
    assert f.severity == "critical"
    assert f.evidence["cert_hash"] == iis_cert().thumbprint


def test_sha256_pointing_nowhere_is_not_found_even_with_valid_sha1() -> None:
    findings = _run(_set("sstp.sha256_hash", "EE" * 32))
    assert only(findings, "SSTP_CERT_NOT_FOUND").fixable
    assert "SSTP_HASH_MISMATCH" not in {f.id for f in findings}


def test_offload_ignores_certificates_named_by_sha1() -> None:
    def stale(snap: Snap) -> None:
        use_sstp_cert(snap, cert(not_before=NOW - timedelta(days=500), not_after=NOW - timedelta(days=1)))
        snap["sstp"].update(use_https=False, sha256_hash=OFFLOAD_SHA256)

    findings = _run(stale, offload_sha256=OFFLOAD_SHA256)
    assert problems(findings) == set()


def test_diagnose_accepts_raw_probe_output() -> None:
    import json

    findings = diagnose(json.dumps(with_iis_binding(healthy())), server(), NOW)
    assert "SSTP_HASH_MISMATCH" in {f.id for f in findings}


def test_pem_armoured_der_is_accepted() -> None:
    def pem(snap: Snap) -> None:
        snap["certificates"][0]["der"] = sstp_cert().pem.decode()

    assert _run(pem) == []


def test_expired_certificate_with_renewal_in_store() -> None:
    def expired_and_renewed(snap: Snap) -> None:
        use_sstp_cert(snap, cert(not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=2)))
        add_cert(snap, cert(not_before=NOW - timedelta(days=5), not_after=NOW + timedelta(days=360)))

    findings = _run(expired_and_renewed)
    assert {"SSTP_CERT_EXPIRED", "SSTP_CERT_RENEWAL_NOT_BOUND"} <= problems(findings)
    assert only(findings, "SSTP_CERT_EXPIRED").fixable and only(findings, "SSTP_CERT_RENEWAL_NOT_BOUND").fixable
