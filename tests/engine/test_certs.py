"""Certificate analysis from DER and RFC 6125 name matching."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from commands.certs import IKE_INTERMEDIATE_OID, analyse_certificate, name_matches
from commands.lab.pki import DEFAULT_CRL_URL, DEFAULT_OCSP_URL, issue_certificate


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("vpn.example.com", "vpn.example.com", True),
        ("VPN.Example.COM", "vpn.example.com", True),
        # DESIGN 4 [2]: a trailing dot matches nothing (every reference refuses it; the config refuses one).
        ("vpn.example.com.", "vpn.example.com", False),
        ("vpn.example.com", "vpn.example.com.", False),
        ("*.example.com", "vpn.example.com", True),
        ("*.Example.com", "VPN.example.com", True),
        ("*.Example.com", "VPN.example.com.", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "example.com", False),
        ("*.com", "example.com", False),
        ("vpn*.example.com", "vpn1.example.com", False),
        ("*.*.example.com", "a.b.example.com", False),
        ("a.*.example.com", "a.b.example.com", False),
        ("vpn.example.com", "vpn2.example.com", False),
        ("", "vpn.example.com", False),
        ("*.example.com", ".example.com", False),
    ],
)
def test_name_matches(pattern: str, name: str, expected: bool) -> None:
    assert name_matches(pattern, name) is expected


def test_analysis_of_a_lab_certificate() -> None:
    issued = issue_certificate(
        common_name="vpn.example.com",
        dns_names=("vpn.example.com", "vpn2.example.com"),
        extra_ekus=(IKE_INTERMEDIATE_OID,),
        client_auth=True,
    )
    info = analyse_certificate(issued.der, has_private_key=True, friendly_name="VPN")
    assert info.thumbprint == issued.thumbprint and info.sha256 == issued.sha256
    assert info.common_name == "vpn.example.com"
    assert info.dns_names == ("vpn.example.com", "vpn2.example.com")
    assert info.names == ("vpn.example.com", "vpn2.example.com")
    assert info.server_auth and not info.any_purpose and IKE_INTERMEDIATE_OID in (info.ekus or ())
    assert info.key_type == "RSA" and info.key_size == 2048
    assert info.signature_hash == "sha256"
    assert info.crl_urls == (DEFAULT_CRL_URL,) and info.ocsp_urls == (DEFAULT_OCSP_URL,)
    assert info.not_before == datetime(2026, 1, 1, tzinfo=UTC)
    assert info.issuer == "CN=sstp-bot Lab Root CA"
    assert info.has_private_key and info.friendly_name == "VPN"
    assert info.weak_reasons == () and info.has_revocation_url


def test_ec_key_and_weak_variants() -> None:
    ec = analyse_certificate(issue_certificate(common_name="a", key="ec", key_size=384).der)
    assert (ec.key_type, ec.key_size) == ("EC", 384)
    small = analyse_certificate(issue_certificate(common_name="a", key_size=1024).der)
    assert small.weak_reasons == ("RSA key of 1024 bits (under 2048)",) and small.unusable_reasons == ()
    sha1 = analyse_certificate(issue_certificate(common_name="a", signature_hash="sha1").der)
    assert sha1.signature_hash == "sha1" and sha1.weak_reasons and not sha1.unusable_reasons
    # DESIGN 4 [2]: MD5 is no longer "weak" but unusable.
    md5 = analyse_certificate(issue_certificate(common_name="a", signature_hash="md5").der)
    assert md5.signature_hash == "md5" and not md5.weak_reasons and md5.unusable_reasons == ("MD5 signature",)


def test_eku_variants() -> None:
    none = analyse_certificate(issue_certificate(common_name="a", include_eku=False).der)
    assert none.ekus is None and not none.usable_for_sstp
    anyp = analyse_certificate(issue_certificate(common_name="a", server_auth=False, any_purpose=True).der)
    assert anyp.any_purpose and anyp.usable_for_sstp
    client = analyse_certificate(issue_certificate(common_name="a", server_auth=False).der)
    assert not client.usable_for_sstp


def test_no_revocation_urls() -> None:
    info = analyse_certificate(issue_certificate(common_name="a", crl_url=None, ocsp_url=None).der)
    assert not info.has_revocation_url


def test_garbage_raises_value_error() -> None:
    with pytest.raises(ValueError):
        analyse_certificate(b"not a certificate")


def test_many_certificates_are_cheap() -> None:
    import time

    started = time.perf_counter()
    thumbprints = {issue_certificate(common_name=f"vpn{i}.example.com").thumbprint for i in range(200)}
    assert len(thumbprints) == 200
    assert time.perf_counter() - started < 5


def test_lab_ca_and_ip_sans() -> None:
    from commands.lab.pki import LabCA, default_ca

    ca = LabCA("Other Root")
    issued = ca.issue(common_name="localhost", dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    info = analyse_certificate(issued.der)
    assert info.issuer == "CN=Other Root" and info.dns_names == ("localhost",)
    assert default_ca() is default_ca() and b"BEGIN CERTIFICATE" in default_ca().pem
