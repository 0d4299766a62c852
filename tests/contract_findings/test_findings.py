"""Every finding ID of DESIGN section 4: a snapshot that must raise it and near-misses that must not.

Each test builds its own snapshot (DESIGN section 3) with real certificates and runs
`sstp-bot diagnose --json`.
"""

from __future__ import annotations

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.contract_findings.helpers import (
    ADFS_APPID,
    IIS_APPID,
    SSTP_APPID,
    SSTP_SDDL,
    binding,
    diagnose,
    event,
    healthy,
    iis_binding,
    main_cert,
    make_cert,
    other_cert,
)

SEVERITIES = {"critical", "warning", "info"}


def assert_healthy(r, allow: set[str] = frozenset()) -> None:
    assert r.json["status"] == "healthy", r.findings
    assert r.code == 0
    assert r.json["error"] is None
    bad = [f for f in r.findings if f["severity"] in ("critical", "warning") and f["id"] not in allow]
    assert not bad, bad


def assert_finding(r, fid: str, severity: str) -> dict:
    found = r.get(fid)
    assert found, f"{fid} not raised; got {sorted(r.ids())}"
    assert {f["severity"] for f in found} == {severity}, found
    for f in found:
        assert f["severity"] in SEVERITIES
        assert isinstance(f["title"], str) and f["title"] and "\n" not in f["title"]
        assert isinstance(f["detail"], str)
        assert isinstance(f["fixable"], bool)
        assert "evidence" in f
    if severity in ("critical", "warning"):
        assert r.json["status"] == "unhealthy"
        assert r.code == 1
    return found[0]


def mismatched_wildcards(snap, endpoints=("0.0.0.0:443", "[::]:443"), app_id=SSTP_APPID, cert=None):
    cert = cert or other_cert()
    snap["certificates"].append(cert.entry())
    for b in snap["http_sys"]["ip_bindings"]:
        if b["endpoint"] in endpoints:
            b["cert_hash"] = cert.sha1
            b["app_id"] = app_id
    return snap


# ------------------------------------------------------------------ baseline


def test_healthy_baseline_is_healthy_with_no_findings():
    r = diagnose(healthy())
    assert_healthy(r)
    assert r.findings == []
    assert r.plan is None


def test_healthy_without_public_name_is_healthy():
    assert_healthy(diagnose(healthy(), None))


def test_healthy_on_non_443_listener_port():
    assert_healthy(diagnose(healthy(port=8443)))


def test_healthy_iis_on_443_when_sstp_on_8443():
    """IIS may own 443 entirely when SSTP listens on another port."""
    snap = healthy(port=8443)
    www = other_cert()
    snap["certificates"].append(www.entry())
    snap["iis"]["https_bindings"] = [iis_binding(www.sha1, "*:443:")]
    snap["http_sys"]["ip_bindings"] += [binding("0.0.0.0:443", www.sha1, IIS_APPID)]
    snap["listeners"].append({"local_address": "0.0.0.0", "port": 443, "pid": 4, "process": "System"})
    r = diagnose(snap)
    assert_healthy(r)
    assert not r.ids() & {"IIS_HTTPS_BINDING", "HTTPSYS_FOREIGN_BINDING", "SSTP_HASH_MISMATCH"}


# ------------------------------------------------------------------ SSTP certificate resolution


def test_resolution_sha256_null_falls_back_to_sha1_hash():
    snap = healthy()
    snap["sstp"]["sha256_hash"] = None
    snap["sstp"]["remote_access"]["thumbprint"] = None
    assert_healthy(diagnose(snap))


def test_resolution_sha256_and_sha1_null_falls_back_to_remote_access_thumbprint():
    snap = healthy()
    snap["sstp"]["sha256_hash"] = None
    snap["sstp"]["sha1_hash"] = None
    assert_healthy(diagnose(snap))


def test_resolution_sha256_wins_over_sha1_hash():
    """sha256_hash names cert A, sha1_hash names cert B; the bindings carry A: consistent."""
    snap = healthy()
    b = other_cert()
    snap["certificates"].append(b.entry())
    snap["sstp"]["sha1_hash"] = b.sha1
    snap["sstp"]["remote_access"]["thumbprint"] = b.sha1
    r = diagnose(snap, None)
    assert "SSTP_HASH_MISMATCH" not in r.ids()
    assert "SSTP_CERT_NOT_FOUND" not in r.ids()


def test_resolution_sha256_wins_bindings_with_sha1_cert_mismatch():
    snap = healthy()
    b = other_cert()
    snap["certificates"].append(b.entry())
    snap["sstp"]["sha1_hash"] = b.sha1
    snap["sstp"]["remote_access"]["thumbprint"] = b.sha1
    for x in snap["http_sys"]["ip_bindings"]:
        x["cert_hash"] = b.sha1
    r = diagnose(snap, None)
    assert_finding(r, "SSTP_HASH_MISMATCH", "critical")


def test_resolution_via_sha1_when_sha256_null_then_name_checks_apply():
    """Resolution by sha1_hash must yield the certificate itself (its checks run on it)."""
    snap = healthy(make_cert(na_days=5, tag="soon"))
    snap["sstp"]["sha256_hash"] = None
    r = diagnose(snap)
    assert_finding(r, "SSTP_CERT_EXPIRING", "warning")


def test_lower_case_hashes_in_bindings_match():
    """DOMAIN 11: netsh prints lower case; normalise hex before comparing."""
    snap = healthy()
    for x in snap["http_sys"]["ip_bindings"]:
        x["cert_hash"] = x["cert_hash"].lower()
    r = diagnose(snap)
    assert r.json["error"] is None
    assert "SSTP_HASH_MISMATCH" not in r.ids()
    assert_healthy(r)


# ------------------------------------------------------------------ SSTP_HASH_MISMATCH


@pytest.mark.parametrize("endpoint", ["0.0.0.0:443", "[::]:443"])
def test_hash_mismatch_on_either_wildcard(endpoint):
    snap = mismatched_wildcards(healthy(), endpoints=(endpoint,))
    r = diagnose(snap)
    f = assert_finding(r, "SSTP_HASH_MISMATCH", "critical")
    assert f["fixable"] is True


def test_hash_mismatch_on_custom_port():
    snap = mismatched_wildcards(healthy(port=8443), endpoints=("0.0.0.0:8443",))
    assert_finding(diagnose(snap), "SSTP_HASH_MISMATCH", "critical")


def test_no_hash_mismatch_for_other_port_binding():
    """SSTP on 8443: a different certificate on 0.0.0.0:443 is not SSTP's business."""
    snap = healthy(port=8443)
    www = other_cert()
    snap["certificates"].append(www.entry())
    snap["http_sys"]["ip_bindings"].append(binding("0.0.0.0:443", www.sha1))
    assert "SSTP_HASH_MISMATCH" not in diagnose(snap).ids()


def test_no_hash_mismatch_in_offload_mode():
    snap = mismatched_wildcards(healthy())
    snap["sstp"]["use_https"] = False
    assert "SSTP_HASH_MISMATCH" not in diagnose(snap).ids()


def test_no_hash_mismatch_for_specific_ip_binding_of_foreign_owner():
    """Only the wildcard bindings 0.0.0.0:PORT and [::]:PORT are compared (DESIGN 4); a foreign
    specific-IP binding is HTTPSYS_FOREIGN_BINDING. (The SSTP-AppId variant is in test_deviations.)"""
    snap = healthy()
    www = other_cert()
    snap["certificates"].append(www.entry())
    snap["http_sys"]["ip_bindings"].append(binding("10.0.0.5:443", www.sha1, ADFS_APPID))
    r = diagnose(snap)
    assert "SSTP_HASH_MISMATCH" not in r.ids()
    assert "HTTPSYS_FOREIGN_BINDING" in r.ids()


# ------------------------------------------------------------------ IIS_HTTPS_BINDING


@pytest.mark.parametrize(
    "info",
    [
        "*:443:",
        "10.0.0.5:443:",
        "*:443:www.example.com",
        "[fe80::1]:443:",
        "[::]:443:vpn.example.com",
        "[2001:db8::5]:443:intranet.example.com",
    ],
)
def test_iis_binding_other_cert_is_critical(info):
    snap = healthy()
    www = other_cert()
    snap["certificates"].append(www.entry())
    snap["iis"]["https_bindings"] = [iis_binding(www.sha1, info)]
    f = assert_finding(diagnose(snap), "IIS_HTTPS_BINDING", "critical")
    assert f["fixable"] is True


@pytest.mark.parametrize("info", ["*:443:", "*:443:vpn.example.com", "10.0.0.5:443:"])
def test_iis_binding_same_cert_is_info_and_healthy(info):
    snap = healthy()
    snap["iis"]["https_bindings"] = [iis_binding(main_cert().sha1, info)]
    r = diagnose(snap)
    assert_finding(r, "IIS_HTTPS_BINDING", "info")
    assert_healthy(r)


def test_iis_binding_same_cert_lower_case_is_info():
    snap = healthy()
    snap["iis"]["https_bindings"] = [iis_binding(main_cert().sha1.lower())]
    r = diagnose(snap)
    assert_finding(r, "IIS_HTTPS_BINDING", "info")


@pytest.mark.parametrize("info", ["*:4433:", "*:8443:", "10.0.0.5:44:", "*:80:www.example.com"])
def test_iis_binding_on_other_port_is_ignored(info):
    snap = healthy()
    www = other_cert()
    snap["certificates"].append(www.entry())
    snap["iis"]["https_bindings"] = [iis_binding(www.sha1, info)]
    r = diagnose(snap)
    assert "IIS_HTTPS_BINDING" not in r.ids()
    assert_healthy(r)


def test_iis_binding_on_custom_sstp_port_is_critical():
    snap = healthy(port=8443)
    www = other_cert()
    snap["certificates"].append(www.entry())
    snap["iis"]["https_bindings"] = [iis_binding(www.sha1, "*:8443:")]
    assert_finding(diagnose(snap), "IIS_HTTPS_BINDING", "critical")


def test_iis_null_section_no_iis_finding():
    snap = healthy()
    snap["iis"] = None
    snap["probe_errors"] = [{"section": "iis", "message": "WebAdministration unavailable"}]
    r = diagnose(snap)
    assert "IIS_HTTPS_BINDING" not in r.ids()
    assert r.json["error"] is None


# ------------------------------------------------------------------ HTTPSYS_FOREIGN_BINDING


@pytest.mark.parametrize("endpoint", ["0.0.0.0:443", "[::]:443"])
def test_foreign_wildcard_binding_other_cert_is_critical(endpoint):
    snap = mismatched_wildcards(healthy(), endpoints=(endpoint,), app_id=IIS_APPID)
    f = assert_finding(diagnose(snap), "HTTPSYS_FOREIGN_BINDING", "critical")
    assert f["fixable"] is True


def test_foreign_specific_ip_binding_other_cert_is_critical():
    snap = healthy()
    www = other_cert()
    snap["certificates"].append(www.entry())
    snap["http_sys"]["ip_bindings"].append(binding("10.0.0.5:443", www.sha1, ADFS_APPID))
    assert_finding(diagnose(snap), "HTTPSYS_FOREIGN_BINDING", "critical")


def test_foreign_binding_same_cert_is_info():
    snap = healthy()
    snap["http_sys"]["ip_bindings"][1]["app_id"] = IIS_APPID
    r = diagnose(snap)
    assert_finding(r, "HTTPSYS_FOREIGN_BINDING", "info")
    assert_healthy(r)


@pytest.mark.parametrize(
    "app_id",
    [
        "{BA195980-CD49-458B-9E23-C84EE0ADCD75}",
        "{Ba195980-Cd49-458b-9E23-C84ee0adcd75}",
        "ba195980-cd49-458b-9e23-c84ee0adcd75",
        "BA195980-CD49-458B-9E23-C84EE0ADCD75",
    ],
)
def test_sstp_appid_any_case_or_braces_is_not_foreign(app_id):
    snap = healthy()
    for b in snap["http_sys"]["ip_bindings"]:
        b["app_id"] = app_id
    r = diagnose(snap)
    assert "HTTPSYS_FOREIGN_BINDING" not in r.ids()
    assert_healthy(r)


def test_foreign_binding_on_other_port_is_ignored():
    snap = healthy()
    www = other_cert()
    snap["certificates"].append(www.entry())
    snap["http_sys"]["ip_bindings"].append(binding("0.0.0.0:4433", www.sha1, IIS_APPID))
    r = diagnose(snap)
    assert "HTTPSYS_FOREIGN_BINDING" not in r.ids()
    assert_healthy(r)


def test_sni_binding_is_not_a_foreign_ip_binding():
    snap = healthy()
    www = other_cert()
    snap["certificates"].append(www.entry())
    snap["http_sys"]["sni_bindings"] = [binding("www.example.com:443", www.sha1, IIS_APPID)]
    assert "HTTPSYS_FOREIGN_BINDING" not in diagnose(snap).ids()


# ------------------------------------------------------------------ HTTPSYS_BINDING_MISSING


@pytest.mark.parametrize("endpoint", ["0.0.0.0:443", "[::]:443"])
def test_binding_missing(endpoint):
    snap = healthy()
    snap["http_sys"]["ip_bindings"] = [
        b for b in snap["http_sys"]["ip_bindings"] if b["endpoint"] != endpoint
    ]
    f = assert_finding(diagnose(snap), "HTTPSYS_BINDING_MISSING", "critical")
    assert f["fixable"] is True


def test_binding_missing_on_custom_port_even_with_443_bindings():
    snap = healthy(port=8443)
    cert = main_cert()
    snap["http_sys"]["ip_bindings"] = [binding("0.0.0.0:443", cert.sha1), binding("[::]:443", cert.sha1)]
    assert_finding(diagnose(snap), "HTTPSYS_BINDING_MISSING", "critical")


def test_binding_missing_not_raised_in_offload_mode():
    snap = healthy()
    snap["sstp"]["use_https"] = False
    snap["http_sys"]["ip_bindings"] = []
    assert "HTTPSYS_BINDING_MISSING" not in diagnose(snap).ids()


def test_specific_ip_binding_does_not_replace_wildcard():
    snap = healthy()
    cert = main_cert()
    snap["http_sys"]["ip_bindings"] = [binding("0.0.0.0:443", cert.sha1), binding("10.0.0.5:443", cert.sha1)]
    assert_finding(diagnose(snap), "HTTPSYS_BINDING_MISSING", "critical")


# ------------------------------------------------------------------ HTTPSYS_SNI_BINDING


def test_sni_binding_warning():
    snap = healthy()
    www = other_cert()
    snap["certificates"].append(www.entry())
    snap["http_sys"]["sni_bindings"] = [binding("vpn.example.com:443", www.sha1, IIS_APPID)]
    assert_finding(diagnose(snap), "HTTPSYS_SNI_BINDING", "warning")


def test_sni_binding_with_sstp_cert_still_warning():
    """The contract raises it whenever an SNI binding exists."""
    snap = healthy()
    snap["http_sys"]["sni_bindings"] = [binding("vpn.example.com:443", main_cert().sha1, IIS_APPID)]
    assert_finding(diagnose(snap), "HTTPSYS_SNI_BINDING", "warning")


def test_sni_binding_on_other_port_ignored():
    snap = healthy()
    www = other_cert()
    snap["certificates"].append(www.entry())
    snap["http_sys"]["sni_bindings"] = [binding("www.example.com:8443", www.sha1, IIS_APPID)]
    r = diagnose(snap)
    assert "HTTPSYS_SNI_BINDING" not in r.ids()


# ------------------------------------------------------------------ URLACL_CONFLICT


@pytest.mark.parametrize("url", ["https://+:443/", "https://*:443/", "https://vpn.example.com:443/", "HTTPS://+:443/"])
def test_urlacl_conflict(url):
    snap = healthy()
    snap["http_sys"]["url_reservations"].append({"url": url, "sddl": "D:(A;;GX;;;WD)"})
    f = assert_finding(diagnose(snap), "URLACL_CONFLICT", "critical")
    assert f["fixable"] is True


@pytest.mark.parametrize(
    "url",
    [
        "https://+:443/sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/",
        "HTTPS://+:443/SRA_{BA195980-CD49-458B-9E23-C84EE0ADCD75}/",
        "https://+:443/sra_{ba195980-cd49-458b-9e23-c84ee0adcd75}/",
    ],
)
def test_sstp_own_reservation_any_case_is_fine(url):
    snap = healthy()
    snap["http_sys"]["url_reservations"] = [{"url": url, "sddl": SSTP_SDDL}]
    r = diagnose(snap)
    assert "URLACL_CONFLICT" not in r.ids()
    assert_healthy(r)


@pytest.mark.parametrize(
    "url", ["http://+:80/Temporary_Listen_Addresses/", "https://+:4433/", "http://+:5985/wsman/"]
)
def test_reservation_on_other_port_is_no_conflict(url):
    snap = healthy()
    snap["http_sys"]["url_reservations"].append({"url": url, "sddl": "D:(A;;GX;;;WD)"})
    assert "URLACL_CONFLICT" not in diagnose(snap).ids()


@pytest.mark.parametrize(
    "url",
    [
        "https://+:443/C574AC30-5794-4AEE-B1BB-6651C5315029/",  # DirectAccess IP-HTTPS
        "http://+:443/foo/",
        "https://vpn.example.com:443/owa/",
        "https://+:443/wsman/",
    ],
)
def test_reservation_of_another_path_is_no_conflict(url):
    """DESIGN 4 [2]: only the port's root reservations cover SSTP's URL; other paths are never deleted."""
    snap = healthy()
    snap["http_sys"]["url_reservations"].append({"url": url, "sddl": "D:(A;;GX;;;WD)"})
    r = diagnose(snap)
    assert "URLACL_CONFLICT" not in r.ids()
    assert_healthy(r)


def test_urlacl_conflict_on_custom_port_only():
    snap = healthy(port=8443)
    snap["http_sys"]["url_reservations"].append({"url": "https://+:443/", "sddl": "D:(A;;GX;;;WD)"})
    assert "URLACL_CONFLICT" not in diagnose(snap).ids()
    snap["http_sys"]["url_reservations"].append({"url": "https://+:8443/", "sddl": "D:(A;;GX;;;WD)"})
    assert_finding(diagnose(snap), "URLACL_CONFLICT", "critical")


# ------------------------------------------------------------------ SSTP_CERT_NOT_FOUND


def test_cert_not_found():
    snap = healthy()
    missing = make_cert(tag="gone")
    snap["sstp"]["sha256_hash"] = missing.sha256
    snap["sstp"]["sha1_hash"] = missing.sha1
    snap["sstp"]["remote_access"]["thumbprint"] = missing.sha1
    assert_finding(diagnose(snap), "SSTP_CERT_NOT_FOUND", "critical")


def test_cert_not_found_when_store_empty():
    snap = healthy()
    snap["certificates"] = []
    assert_finding(diagnose(snap), "SSTP_CERT_NOT_FOUND", "critical")


def test_cert_not_found_not_raised_in_offload_mode():
    """Offload: SHA256CertificateHash is the load balancer's certificate, not in the store."""
    snap = healthy()
    lb = make_cert(tag="lb")
    snap["sstp"]["use_https"] = False
    snap["sstp"]["sha256_hash"] = lb.sha256
    snap["sstp"]["sha1_hash"] = None
    snap["sstp"]["remote_access"]["thumbprint"] = None
    r = diagnose(snap)
    assert "SSTP_CERT_NOT_FOUND" not in r.ids()
    assert "SSTP_OFFLOAD_HASH" not in r.ids()


def test_cert_found_with_lower_case_sha256_hash():
    snap = healthy()
    snap["sstp"]["sha256_hash"] = snap["sstp"]["sha256_hash"].lower()
    r = diagnose(snap)
    assert "SSTP_CERT_NOT_FOUND" not in r.ids()


# ------------------------------------------------------------------ expiry


def test_cert_expired():
    snap = healthy(make_cert(nb_days=-400, na_days=-1, tag="exp"))
    f = assert_finding(diagnose(snap), "SSTP_CERT_EXPIRED", "critical")
    assert f["fixable"] is False  # no other candidate in the store


def test_cert_not_yet_valid():
    snap = healthy(make_cert(nb_days=2, na_days=300, tag="future"))
    assert_finding(diagnose(snap), "SSTP_CERT_EXPIRED", "critical")


def test_cert_expired_minutes_ago():
    snap = healthy(make_cert(nb_days=-400, na_days=-0.01, tag="exp-min"))
    assert_finding(diagnose(snap), "SSTP_CERT_EXPIRED", "critical")


@pytest.mark.parametrize("days", [1, 10, 29])
def test_cert_expiring(days):
    r = diagnose(healthy(make_cert(na_days=days, tag=f"soon{days}")))
    assert_finding(r, "SSTP_CERT_EXPIRING", "warning")
    assert "SSTP_CERT_EXPIRED" not in r.ids()


@pytest.mark.parametrize("days", [31, 45, 300])
def test_cert_not_expiring_outside_window(days):
    r = diagnose(healthy(make_cert(na_days=days, tag=f"later{days}")))
    assert "SSTP_CERT_EXPIRING" not in r.ids()
    assert_healthy(r)


def test_expired_cert_is_not_also_reported_found_missing():
    r = diagnose(healthy(make_cert(nb_days=-400, na_days=-1, tag="exp")))
    assert "SSTP_CERT_NOT_FOUND" not in r.ids()


# ------------------------------------------------------------------ SSTP_CERT_RENEWAL_NOT_BOUND


def renewed(**kw):
    return make_cert(nb_days=-1, na_days=390, tag="renewed", **kw)


def test_renewal_not_bound():
    snap = healthy(extra_certs=[renewed().entry()])
    f = assert_finding(diagnose(snap), "SSTP_CERT_RENEWAL_NOT_BOUND", "warning")
    assert f["fixable"] is True


def test_renewal_not_bound_with_expiring_current():
    snap = healthy(make_cert(na_days=5, tag="soon5"), extra_certs=[renewed().entry()])
    r = diagnose(snap)
    assert_finding(r, "SSTP_CERT_RENEWAL_NOT_BOUND", "warning")
    assert_finding(r, "SSTP_CERT_EXPIRING", "warning")


def test_no_renewal_for_other_names():
    snap = healthy(
        extra_certs=[make_cert("www.example.com", ("www.example.com",), na_days=500, tag="w").entry()]
    )
    r = diagnose(snap)
    assert "SSTP_CERT_RENEWAL_NOT_BOUND" not in r.ids()
    assert_healthy(r)


def test_no_renewal_for_candidate_without_private_key():
    snap = healthy(extra_certs=[renewed().entry(has_private_key=False)])
    assert "SSTP_CERT_RENEWAL_NOT_BOUND" not in diagnose(snap).ids()


def test_no_renewal_for_candidate_without_server_auth():
    cand = make_cert(nb_days=-1, na_days=390, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,), tag="renewed-ca")
    snap = healthy(extra_certs=[cand.entry()])
    assert "SSTP_CERT_RENEWAL_NOT_BOUND" not in diagnose(snap).ids()


def test_no_renewal_for_older_certificate():
    old = make_cert(nb_days=-300, na_days=60, tag="older")
    snap = healthy(extra_certs=[old.entry()])
    r = diagnose(snap)
    assert "SSTP_CERT_RENEWAL_NOT_BOUND" not in r.ids()
    assert_healthy(r)


def test_no_renewal_for_not_yet_valid_candidate():
    cand = make_cert(nb_days=5, na_days=400, tag="renewed-future")
    snap = healthy(extra_certs=[cand.entry()])
    assert "SSTP_CERT_RENEWAL_NOT_BOUND" not in diagnose(snap).ids()


# ------------------------------------------------------------------ private key, EKU


def test_no_private_key():
    snap = healthy()
    snap["certificates"][0]["has_private_key"] = False
    assert_finding(diagnose(snap), "SSTP_CERT_NO_PRIVATE_KEY", "critical")


def test_eku_client_auth_only():
    snap = healthy(make_cert(eku=(ExtendedKeyUsageOID.CLIENT_AUTH,), tag="client"))
    assert_finding(diagnose(snap), "SSTP_CERT_EKU", "critical")


def test_eku_any_purpose_is_accepted():
    snap = healthy(make_cert(eku=(ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,), tag="any"))
    r = diagnose(snap)
    assert "SSTP_CERT_EKU" not in r.ids()
    assert_healthy(r)


def test_eku_server_and_client_auth_is_fine():
    cert = make_cert(eku=(ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH), tag="both")
    assert_healthy(diagnose(healthy(cert)))


# ------------------------------------------------------------------ SSTP_CERT_NAME_MISMATCH


def test_name_mismatch():
    f = assert_finding(diagnose(healthy(), "other.example.org"), "SSTP_CERT_NAME_MISMATCH", "critical")
    assert isinstance(f["fixable"], bool)


def test_name_match_is_case_insensitive():
    assert_healthy(diagnose(healthy(), "VPN.Example.COM"))


def test_name_matches_second_san():
    cert = make_cert("vpn.example.com", ("vpn.example.com", "sstp.example.net"), tag="multi")
    assert_healthy(diagnose(healthy(cert), "sstp.example.net"))


def test_name_matches_cn_when_no_san():
    cert = make_cert("vpn.example.com", None, tag="cn-only")
    assert_healthy(diagnose(healthy(cert), "vpn.example.com"))


def test_name_in_cn_but_not_in_dns_sans_is_a_mismatch():
    """DESIGN 4 [2]: with any DNS SAN the CN is ignored, as TLS clients do (RFC 6125)."""
    cert = make_cert("vpn.example.com", ("other.example.com",), tag="cn-not-san")
    assert_finding(diagnose(healthy(cert), "vpn.example.com"), "SSTP_CERT_NAME_MISMATCH", "critical")


def test_wildcard_san_matches_one_label():
    cert = make_cert("*.example.com", ("*.example.com",), tag="wild")
    assert_healthy(diagnose(healthy(cert), "vpn.example.com"))


@pytest.mark.parametrize("name", ["a.vpn.example.com", "example.com", "vpn.example.org"])
def test_wildcard_san_does_not_match_other_depths(name):
    cert = make_cert("*.example.com", ("*.example.com",), tag="wild")
    assert_finding(diagnose(healthy(cert), name), "SSTP_CERT_NAME_MISMATCH", "critical")


def test_no_public_name_no_name_check():
    assert "SSTP_CERT_NAME_MISMATCH" not in diagnose(healthy(), None).ids()


# ------------------------------------------------------------------ SSTP_CERT_WEAK


def test_weak_rsa_1024():
    assert_finding(diagnose(healthy(make_cert(bits=1024, tag="1024"))), "SSTP_CERT_WEAK", "warning")


def test_weak_signature():
    assert_finding(diagnose(healthy(make_cert(sig="sha1", tag="sha1"))), "SSTP_CERT_WEAK", "warning")


def test_md5_signature_is_unusable():
    """DESIGN 4 [2]: MD2/MD4/MD5 signatures are SSTP_CERT_UNUSABLE (critical), not weak."""
    r = diagnose(healthy(make_cert(sig="md5", tag="md5")))
    assert_finding(r, "SSTP_CERT_UNUSABLE", "critical")
    assert "SSTP_CERT_WEAK" not in r.ids()


def test_ecdsa_p256_is_not_weak():
    assert_healthy(diagnose(healthy(make_cert(key_kind="ec", tag="ec"))))


def test_rsa_3072_not_weak():
    assert_healthy(diagnose(healthy(make_cert(bits=3072, tag="3072"))))


# ------------------------------------------------------------------ SSTP_CERT_NO_REVOCATION_URL


def test_no_revocation_url():
    cert = make_cert(crl=False, ocsp=False, tag="norev")
    assert_finding(diagnose(healthy(cert)), "SSTP_CERT_NO_REVOCATION_URL", "warning")


def test_ocsp_only_is_enough():
    assert_healthy(diagnose(healthy(make_cert(crl=False, ocsp=True, tag="ocsp"))))


def test_crl_and_ocsp_is_fine():
    assert_healthy(diagnose(healthy(make_cert(crl=True, ocsp=True, tag="both-rev"))))


# ------------------------------------------------------------------ SSTP_OFFLOAD_HASH


def offload(snap, sha256):
    snap["sstp"]["use_https"] = False
    snap["sstp"]["sha256_hash"] = sha256
    snap["sstp"]["sha1_hash"] = None
    snap["sstp"]["remote_access"]["thumbprint"] = None
    snap["http_sys"]["ip_bindings"] = []
    return snap


def test_offload_without_hash():
    f = assert_finding(diagnose(offload(healthy(), None)), "SSTP_OFFLOAD_HASH", "critical")
    assert f["fixable"] is False


def test_offload_with_hash_no_configured_value_is_healthy():
    r = diagnose(offload(healthy(), make_cert(tag="lb").sha256))
    assert "SSTP_OFFLOAD_HASH" not in r.ids()
    assert_healthy(r)


def test_https_mode_no_offload_finding():
    snap = healthy()
    snap["sstp"]["sha256_hash"] = None
    assert "SSTP_OFFLOAD_HASH" not in diagnose(snap).ids()


# ------------------------------------------------------------------ services and listeners


@pytest.mark.parametrize("status", ["Stopped", "StartPending", "Paused"])
def test_remoteaccess_not_running(status):
    snap = healthy()
    snap["services"]["RemoteAccess"]["status"] = status
    snap["listeners"] = []
    r = diagnose(snap)
    f = assert_finding(r, "REMOTEACCESS_STOPPED", "critical")
    assert f["fixable"] is True
    assert "SSTP_NOT_LISTENING" not in r.ids()


def test_not_listening():
    snap = healthy()
    snap["listeners"] = []
    assert_finding(diagnose(snap), "SSTP_NOT_LISTENING", "critical")


def test_not_listening_on_custom_port_when_only_443_listens():
    snap = healthy(port=8443)
    for item in snap["listeners"]:
        item["port"] = 443
    assert_finding(diagnose(snap), "SSTP_NOT_LISTENING", "critical")


def test_ipv6_listener_only_is_listening():
    snap = healthy()
    snap["listeners"] = [x for x in snap["listeners"] if x["local_address"] == "::"]
    r = diagnose(snap)
    assert "SSTP_NOT_LISTENING" not in r.ids()
    assert_healthy(r)


def test_port_owned_by_other_process():
    snap = healthy()
    snap["listeners"] = [{"local_address": "0.0.0.0", "port": 443, "pid": 2345, "process": "nginx"}]
    r = diagnose(snap)
    f = assert_finding(r, "PORT_OWNED_BY_OTHER_PROCESS", "critical")
    assert f["fixable"] is False
    assert r.plan is None


def test_other_process_on_other_port_is_fine():
    snap = healthy()
    snap["listeners"].append({"local_address": "0.0.0.0", "port": 8080, "pid": 2345, "process": "nginx"})
    snap["listeners"].append({"local_address": "0.0.0.0", "port": 4433, "pid": 2346, "process": "x"})
    assert_healthy(diagnose(snap))


def test_other_process_on_custom_sstp_port():
    snap = healthy(port=8443)
    snap["listeners"].append({"local_address": "10.0.0.5", "port": 8443, "pid": 2345, "process": "nginx"})
    assert_finding(diagnose(snap), "PORT_OWNED_BY_OTHER_PROCESS", "critical")


def test_other_process_on_443_when_sstp_on_8443_is_fine():
    snap = healthy(port=8443)
    snap["listeners"].append({"local_address": "0.0.0.0", "port": 443, "pid": 2345, "process": "nginx"})
    assert "PORT_OWNED_BY_OTHER_PROCESS" not in diagnose(snap).ids()


# ------------------------------------------------------------------ SSTP_ERROR_EVENTS


@pytest.mark.parametrize("eid", [8, 9, 12, 13, 18, 21])
def test_rassstp_error_events(eid):
    snap = healthy()
    snap["events"] = [event(eid)]
    assert_finding(diagnose(snap), "SSTP_ERROR_EVENTS", "warning")


def test_schannel_36870_counts():
    snap = healthy()
    snap["events"] = [event(36870, provider="Schannel")]
    assert_finding(diagnose(snap), "SSTP_ERROR_EVENTS", "warning")


def test_rassstp_short_provider_name_counts():
    snap = healthy()
    snap["events"] = [event(21, provider="RasSstp")]
    assert_finding(diagnose(snap), "SSTP_ERROR_EVENTS", "warning")


@pytest.mark.parametrize("eid", [1, 6, 20, 23, 36882])
def test_other_event_ids_do_not_count(eid):
    snap = healthy()
    snap["events"] = [event(eid, provider="Schannel" if eid > 1000 else "Microsoft-Windows-RasSstp")]
    r = diagnose(snap)
    assert "SSTP_ERROR_EVENTS" not in r.ids()
    assert_healthy(r)


def test_old_events_do_not_count():
    snap = healthy()
    snap["events"] = [event(21, hours_ago=25), event(18, hours_ago=48)]
    r = diagnose(snap)
    assert "SSTP_ERROR_EVENTS" not in r.ids()
    assert_healthy(r)


def test_event_time_with_windows_7_digit_fraction_counts():
    """Windows round-trip times ("o" format) carry 7 fractional digits; still ISO 8601."""
    snap = healthy()
    e = event(21, hours_ago=2)
    e["time"] = e["time"].replace("Z", ".1234567Z")
    snap["events"] = [e]
    r = diagnose(snap)
    assert r.json["error"] is None
    assert_finding(r, "SSTP_ERROR_EVENTS", "warning")


def test_event_23_hours_ago_counts():
    snap = healthy()
    snap["events"] = [event(21, hours_ago=23)]
    assert_finding(diagnose(snap), "SSTP_ERROR_EVENTS", "warning")


# ------------------------------------------------------------------ NOT_ELEVATED, PROBE_INCOMPLETE


def test_not_elevated():
    snap = healthy()
    snap["host"]["is_admin"] = False
    r = diagnose(snap)
    f = assert_finding(r, "NOT_ELEVATED", "critical")
    assert f["fixable"] is False
    assert r.json["error"] is None


def test_probe_incomplete():
    snap = healthy()
    snap["probe_errors"] = [{"section": "events", "message": "Get-WinEvent failed"}]
    snap["events"] = None
    f = assert_finding(diagnose(snap), "PROBE_INCOMPLETE", "warning")
    assert f["fixable"] is False


def test_probe_errors_empty_no_finding():
    assert "PROBE_INCOMPLETE" not in diagnose(healthy()).ids()


# ------------------------------------------------------------------ null sections


@pytest.mark.parametrize(
    "section", ["iis", "events", "vpn_connections", "http_sys", "listeners", "certificates", "services"]
)
def test_null_section_with_probe_error_is_diagnosed_not_crashed(section):
    snap = healthy()
    snap[section] = None
    snap["probe_errors"] = [{"section": section, "message": "could not read"}]
    r = diagnose(snap)
    assert r.json["error"] is None, r.json
    assert r.json["status"] == "unhealthy"
    assert_finding(r, "PROBE_INCOMPLETE", "warning")
    assert r.code == 1


def test_null_optional_fields_in_healthy_snapshot():
    snap = healthy()
    snap["services"]["W3SVC"] = None
    snap["services"]["WAS"] = None
    snap["vpn_connections"] = None
    snap["sstp"]["is_hash_configured_by_admin"] = None
    snap["iis"] = {"installed": False, "https_bindings": []}
    assert_healthy(diagnose(snap))


def test_null_listener_port_means_443():
    """DOMAIN 1.1: ListenerPort may be absent = default 443."""
    snap = healthy()
    snap["sstp"]["listener_port"] = None
    assert_healthy(diagnose(snap))
