"""Every certificate of `cryptography-vectors` through the analysis and through `diagnose` (issue 8).

Material nobody here wrote: 0 exceptions, every certificate `cryptography` can load is analysed with
all the checks that apply, the odd keys get the verdicts DESIGN 4 [2] asks for. Warnings are errors
in this module: a deprecation `cryptography` announces (negative serials, DSA, odd policy text) must
be handled by the analysis, not escape from it.
"""

from __future__ import annotations

import base64
import copy
import re
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import cryptography_vectors  # a test dependency (pyproject `test` extra): a missing one fails, never skips
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from commands.certs import analyse_certificate
from commands.diagnosis import diagnose
from commands.snapshot import parse_snapshot
from tests.engine.builder import healthy, server

pytestmark = pytest.mark.filterwarnings("error")

X509 = Path(cryptography_vectors.__file__).parent / "x509"
PEM_RE = re.compile(rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----(.*?)-----END (?:X509 |TRUSTED )?CERTIFICATE-----", re.S)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
T = TypeVar("T")
ROBUSTNESS = ("invalid_utf8_common_name.pem", "long-form-name-attribute.pem", "name_attribute_unsupported_tag.pem")


@cache
def vector_certificates() -> tuple[tuple[str, bytes], ...]:
    """(file name, DER) of every certificate in the x509 vectors, PEM blocks and DER files alike."""
    out: list[tuple[str, bytes]] = []
    for path in sorted(X509.rglob("*")):
        if path.suffix.lower() not in (".pem", ".der", ".crt", ".cer"):
            continue
        data = path.read_bytes()
        blocks = PEM_RE.findall(data)
        name = str(path.relative_to(X509))
        if blocks:
            for i, block in enumerate(blocks):
                try:
                    out.append((f"{name}#{i}", base64.b64decode(b"".join(block.split()))))
                except ValueError:
                    continue
        elif b"-----BEGIN" not in data:
            out.append((name, data))
    return tuple(out)


def _quiet(fn: Callable[[], T]) -> T | None:
    """The test's own use of `cryptography` (the reference), without its warnings; None on failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn()
        except Exception:
            return None


def _loads(der: bytes) -> x509.Certificate | None:
    return _quiet(lambda: x509.load_der_x509_certificate(der))


def _snapshot_with(der: bytes) -> dict[str, object]:
    """The healthy snapshot whose SSTP certificate is `der` (bindings and hashes pointing at it)."""
    import hashlib

    snap = copy.deepcopy(healthy())
    sha1 = hashlib.sha1(der).hexdigest().upper()
    sha256 = hashlib.sha256(der).hexdigest().upper()
    snap["certificates"] = [{"thumbprint": sha1, "has_private_key": True, "friendly_name": "",
                             "der": base64.b64encode(der).decode()}]
    snap["sstp"]["sha256_hash"] = sha256  # type: ignore[index]
    snap["sstp"]["sha1_hash"] = sha1  # type: ignore[index]
    snap["sstp"]["remote_access"]["thumbprint"] = sha1  # type: ignore[index]
    for b in snap["http_sys"]["ip_bindings"]:  # type: ignore[index]
        b["cert_hash"] = sha1
    return snap


def test_the_vectors_are_there() -> None:
    assert len(vector_certificates()) > 400


def test_every_vector_certificate_is_analysed_or_refused_cleanly() -> None:
    analysed = 0
    for name, der in vector_certificates():
        loaded = _loads(der)
        try:
            info = analyse_certificate(der, has_private_key=True)
        except ValueError:
            assert loaded is None, f"{name}: cryptography loads it but the analysis refused it"
            continue
        analysed += 1
        assert loaded is not None
        # The checks that apply were made: names, usages, validity, key and signature are known.
        assert info.not_before == loaded.not_valid_before_utc and info.not_after == loaded.not_valid_after_utc
        assert info.key_type in ("RSA", "EC", "DSA", "Ed25519", "Ed448", "unknown")
        assert isinstance(info.unusable_reasons, tuple) and isinstance(info.weak_reasons, tuple)
    assert analysed > 400


def test_every_vector_certificate_through_diagnose() -> None:
    srv = server()
    for name, der in vector_certificates():
        findings = diagnose(parse_snapshot(_snapshot_with(der)), srv, NOW)
        ids = {f.id for f in findings}
        if _loads(der) is not None:
            # Loadable: judged as a certificate, never reported unreadable.
            assert "CERTIFICATE_UNREADABLE" not in ids, name
        else:
            assert "CERTIFICATE_UNREADABLE" in ids, name


@pytest.mark.parametrize("name", ROBUSTNESS)
def test_malformed_attributes_do_not_hide_the_other_checks(name: str) -> None:
    (der,) = [d for n, d in vector_certificates() if Path(n.split("#")[0]).name == name]
    info = analyse_certificate(der, has_private_key=True)
    assert info.problems, "what could not be read is recorded"
    findings = diagnose(parse_snapshot(_snapshot_with(der)), server(), NOW)
    ids = {f.id for f in findings}
    assert "CERTIFICATE_UNREADABLE" not in ids
    # Expiry, EKU and name were all judged.
    assert ("SSTP_CERT_EXPIRED" in ids) == (not info.is_time_valid(NOW))
    assert ("SSTP_CERT_EKU" in ids) == (not info.usable_for_sstp)
    assert ("SSTP_CERT_NAME_MISMATCH" in ids) == (not info.matches("vpn.example.com"))


def test_negative_serial_is_a_problem_not_a_crash() -> None:
    negative = [d for n, d in vector_certificates() if "negative_serial" in n.lower()]
    assert negative
    for der in negative:
        info = analyse_certificate(der)
        assert info.serial_number.startswith("-") or info.serial_number == "0"
        assert any("serial" in p.lower() for p in info.problems)


def _verdicts(der: bytes) -> set[str]:
    return {f.id for f in diagnose(parse_snapshot(_snapshot_with(der)), server(), NOW)}


def test_vector_odd_keys_and_signatures() -> None:
    seen: dict[str, int] = {}
    for name, der in vector_certificates():
        cert = _loads(der)
        if cert is None:
            continue
        key = _quiet(cert.public_key)
        kind = None
        odd = isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey) or "DSA" in type(key).__name__
        if odd or key is None or (isinstance(key, rsa.RSAPublicKey) and key.key_size < 1024):
            kind = "unusable key"
        elif isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
            kind = "weak key"
        elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in ("secp256r1", "secp384r1"):
            kind = "unusable key"
        if cert.signature_algorithm_oid.dotted_string in ("1.2.840.113549.1.1.4", "1.2.840.113549.2.5",
                                                          "1.2.840.113549.1.1.2"):
            kind = "unusable signature"
        if kind is None:
            continue
        seen[kind] = seen.get(kind, 0) + 1
        ids = _verdicts(der)
        if kind.startswith("unusable"):
            assert "SSTP_CERT_UNUSABLE" in ids, name
        else:
            assert "SSTP_CERT_WEAK" in ids and "SSTP_CERT_UNUSABLE" not in _key_reasons(der), name
    assert seen.get("unusable key", 0) >= 8 and seen.get("weak key", 0) >= 5 and seen.get("unusable signature", 0) >= 2


def _key_reasons(der: bytes) -> str:
    return " ".join(r for r in analyse_certificate(der).unusable_reasons if "key" in r)


# Keys the vectors lack: made here, signed by a P-256 CA (the verdict is about the subject key).
@cache
def _ca() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _issue(public_key: object) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vpn.example.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]))
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("vpn.example.com")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(_ca(), hashes.SHA256())
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


def _dsa() -> Any:
    from cryptography.hazmat.primitives.asymmetric import dsa

    return dsa


def _rsa_public(bits: int) -> rsa.RSAPublicKey:
    # Only the public key goes into the certificate: any odd modulus of the right size will do.
    return rsa.RSAPublicNumbers(65537, (1 << (bits - 1)) | 0xFFFF | 1).public_key()


@pytest.mark.parametrize(
    ("label", "make", "verdict"),
    [
        ("P-521", lambda: ec.generate_private_key(ec.SECP521R1()).public_key(), "SSTP_CERT_UNUSABLE"),
        ("secp256k1", lambda: ec.generate_private_key(ec.SECP256K1()).public_key(), "SSTP_CERT_UNUSABLE"),
        ("brainpoolP256r1", lambda: ec.generate_private_key(ec.BrainpoolP256R1()).public_key(), "SSTP_CERT_UNUSABLE"),
        ("P-192", lambda: ec.generate_private_key(ec.SECP192R1()).public_key(), "SSTP_CERT_UNUSABLE"),
        ("P-224", lambda: ec.generate_private_key(ec.SECP224R1()).public_key(), "SSTP_CERT_UNUSABLE"),
        ("Ed25519", lambda: ed25519.Ed25519PrivateKey.generate().public_key(), "SSTP_CERT_UNUSABLE"),
        ("Ed448", lambda: ed448.Ed448PrivateKey.generate().public_key(), "SSTP_CERT_UNUSABLE"),
        ("DSA", lambda: _dsa().generate_private_key(2048).public_key(), "SSTP_CERT_UNUSABLE"),
        ("RSA-512", lambda: _rsa_public(512), "SSTP_CERT_UNUSABLE"),
        ("RSA-768", lambda: _rsa_public(768), "SSTP_CERT_UNUSABLE"),
        ("RSA-1024", lambda: _rsa_public(1024), "SSTP_CERT_WEAK"),
        ("RSA-2047", lambda: _rsa_public(2047), "SSTP_CERT_WEAK"),
        ("P-256", lambda: ec.generate_private_key(ec.SECP256R1()).public_key(), None),
        ("P-384", lambda: ec.generate_private_key(ec.SECP384R1()).public_key(), None),
        ("RSA-2048", lambda: _rsa_public(2048), None),
    ],
)
def test_key_verdicts(label: str, make: Callable[[], Any], verdict: str | None) -> None:
    der = _issue(_quiet(make))  # type: ignore[arg-type]
    ids = _verdicts(der)
    judged = ids & {"SSTP_CERT_UNUSABLE", "SSTP_CERT_WEAK"}
    assert judged == ({verdict} if verdict else set()), (label, ids)


def test_a_remembered_analysis_is_the_analysis() -> None:
    """Each certificate is analysed once per process (a sweep sees the same few everywhere): the
    remembered result equals a fresh one, warnings included, and the private-key flag and friendly
    name are part of what is remembered."""
    from commands import certs

    negative = next(d for n, d in vector_certificates() if "negative_serial" in n.lower())
    first = analyse_certificate(negative, has_private_key=True, friendly_name="a")
    assert analyse_certificate(negative, has_private_key=True, friendly_name="a") is first
    fresh = certs._analyse.__wrapped__(negative, True, "a")
    assert fresh == first and any("serial" in p.lower() for p in first.problems)
    other = analyse_certificate(negative, has_private_key=False, friendly_name="b")
    assert (other.has_private_key, other.friendly_name) == (False, "b")
    with pytest.raises(ValueError):
        analyse_certificate(b"not a certificate")
