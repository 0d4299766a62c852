"""A small PKI for the lab and the tests: one self-signed root and server certificates under it.

Certificates are real DER built with `cryptography`, so the engine analyses them exactly as it
analyses certificates read from a server's LocalMachine\\My store. Key generation is the slow part,
so one key per (type, size) is generated per process and reused: hundreds of certificates cost
milliseconds each.

Recent `cryptography` releases refuse to sign with SHA-1 or MD5. Weak signatures are still needed to
exercise `SSTP_CERT_WEAK`, so for RSA keys the certificate is first signed with SHA-256 and then its
algorithm identifiers are swapped (they have the same DER length) and the TBS part re-signed with the
weak hash. EC keys only support SHA-256/384/512.
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

KeyType = Literal["rsa", "ec"]
SignatureHash = Literal["sha256", "sha384", "sha512", "sha1", "md5"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

DEFAULT_CA_NAME = "sstp-bot Lab Root CA"
DEFAULT_CRL_URL = "http://pki.lab.example/crl/sstp-bot-lab-root.crl"
DEFAULT_OCSP_URL = "http://pki.lab.example/ocsp"
# Long windows so shipped examples and fixtures never expire; tests still pass `now` explicitly.
DEFAULT_NOT_BEFORE = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_NOT_AFTER = datetime(2036, 1, 1, tzinfo=UTC)

# DER AlgorithmIdentifier encodings (SEQUENCE { OID, NULL }), all 15 bytes long for RSA.
_RSA_ALG_IDS = {
    "md5": bytes.fromhex("300d06092a864886f70d0101040500"),
    "sha1": bytes.fromhex("300d06092a864886f70d0101050500"),
    "sha256": bytes.fromhex("300d06092a864886f70d01010b0500"),
}
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
    "sha1": hashes.SHA1(),
    "md5": hashes.MD5(),
}
_EC_CURVES: dict[int, ec.EllipticCurve] = {256: ec.SECP256R1(), 384: ec.SECP384R1(), 521: ec.SECP521R1()}

_key_lock = threading.Lock()
_keys: dict[tuple[str, int, int], PrivateKey] = {}


def cached_key(key: KeyType = "rsa", key_size: int = 2048, slot: int = 0) -> PrivateKey:
    """A private key of this type and size, generated once per process (per `slot`)."""
    with _key_lock:
        found = _keys.get((key, key_size, slot))
        if found is None:
            if key == "rsa":
                found = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
            elif key == "ec":
                if key_size not in _EC_CURVES:
                    raise ValueError(f"unsupported EC key size {key_size} (use 256, 384 or 521)")
                found = ec.generate_private_key(_EC_CURVES[key_size])
            else:
                raise ValueError(f"unsupported key type {key!r}")
            _keys[(key, key_size, slot)] = found
        return found


class LabCA:
    """A self-signed root certification authority (its key is the process-wide cached CA key).

    `LabCA()` builds the default lab root; `default_ca()` returns one shared instance.
    """

    def __init__(
        self,
        common_name: str = DEFAULT_CA_NAME,
        *,
        not_before: datetime = datetime(2020, 1, 1, tzinfo=UTC),
        not_after: datetime = datetime(2045, 1, 1, tzinfo=UTC),
    ) -> None:
        key = cached_key("rsa", 2048, slot=1)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(_serial(common_name))
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        self.common_name = common_name
        self.key: PrivateKey = key
        self.certificate: x509.Certificate = builder.sign(key, hashes.SHA256())

    @classmethod
    def create(cls, common_name: str = DEFAULT_CA_NAME, **kwargs: datetime) -> LabCA:
        return cls(common_name, **kwargs)

    def __repr__(self) -> str:
        return f"LabCA({self.common_name!r})"

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        """The root certificate in PEM (a `ca_bundle` for clients of lab TLS endpoints)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def thumbprint(self) -> str:
        return hashlib.sha1(self.der).hexdigest().upper()

    def issue(self, **kwargs: Any) -> IssuedCertificate:
        """`issue_certificate(self, **kwargs)`."""
        return issue_certificate(self, **kwargs)


@cache
def default_ca() -> LabCA:
    """The lab's root CA, created once per process."""
    return LabCA()


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate issued by the lab CA."""

    der: bytes = field(repr=False)
    thumbprint: str  # SHA-1 over the DER, upper-case hex: the Windows `Thumbprint`
    sha256: str  # SHA-256 over the DER, upper-case hex: `SHA256CertificateHash`
    common_name: str
    dns_names: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    key: PrivateKey = field(repr=False)

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _serial(*parts: object) -> int:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:16], "big") >> 1 or 1


_serial_lock = threading.Lock()
_serial_counter = 0


def _next_serial(*parts: object) -> int:
    global _serial_counter
    with _serial_lock:
        _serial_counter += 1
        return _serial(_serial_counter, *parts)


def issue_certificate(
    ca: LabCA | None = None,
    *,
    common_name: str,
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    not_before: datetime = DEFAULT_NOT_BEFORE,
    not_after: datetime = DEFAULT_NOT_AFTER,
    key: KeyType = "rsa",
    key_size: int | None = None,
    server_auth: bool = True,
    client_auth: bool = False,
    any_purpose: bool = False,
    extra_ekus: Iterable[str] = (),
    include_eku: bool = True,
    signature_hash: SignatureHash = "sha256",
    crl_url: str | None = DEFAULT_CRL_URL,
    ocsp_url: str | None = DEFAULT_OCSP_URL,
    serial_number: int | None = None,
    key_slot: int = 0,
) -> IssuedCertificate:
    """Issue a server certificate under `ca` (default: the lab root).

    `key_size` defaults to 2048 for RSA and 256 for EC. `ip_addresses` go into the SAN next to
    `dns_names` (for TLS endpoints reached as 127.0.0.1). `extra_ekus` are dotted OIDs (for example the
    IKE intermediate EKU 1.3.6.1.5.5.8.2.2). With `include_eku=False` the certificate carries no EKU
    extension at all. `signature_hash` "sha1"/"md5" is only possible with RSA keys (see module doc).
    Certificates with the same arguments still get distinct serial numbers, hence distinct thumbprints.
    """
    ca = ca or default_ca()
    size = key_size if key_size is not None else (2048 if key == "rsa" else 256)
    if signature_hash not in _HASHES:
        raise ValueError(f"unsupported signature hash {signature_hash!r}")
    if signature_hash in ("sha1", "md5") and not isinstance(ca.key, rsa.RSAPrivateKey):
        raise ValueError("SHA-1/MD5 signatures need an RSA CA key")
    subject_key = cached_key(key, size, slot=key_slot)
    names = tuple(dns_names)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]) if common_name else x509.Name([])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(subject_key.public_key())
        .serial_number(serial_number or _next_serial(common_name, names, not_before, not_after, key, size))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    ips = tuple(ipaddress.ip_address(ip) for ip in ip_addresses)
    if names or ips:
        general: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        general += [x509.IPAddress(ip) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    if include_eku:
        ekus: list[x509.ObjectIdentifier] = []
        if server_auth:
            ekus.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client_auth:
            ekus.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        if any_purpose:
            ekus.append(ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)
        ekus.extend(x509.ObjectIdentifier(oid) for oid in extra_ekus)
        if not ekus:
            # An empty EKU extension is invalid DER; "no usage we care about" = client auth only.
            ekus.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    if crl_url:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)]
            ),
            critical=False,
        )
    if ocsp_url:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url))]
            ),
            critical=False,
        )
    if signature_hash in ("sha1", "md5"):
        der = _sign_weak(builder.sign(ca.key, hashes.SHA256()), ca.key, signature_hash)
    else:
        strong: dict[str, hashes.SHA256 | hashes.SHA384 | hashes.SHA512] = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}
        der = builder.sign(ca.key, strong[signature_hash]).public_bytes(serialization.Encoding.DER)
    return IssuedCertificate(
        der=der,
        thumbprint=hashlib.sha1(der).hexdigest().upper(),
        sha256=hashlib.sha256(der).hexdigest().upper(),
        common_name=common_name,
        dns_names=names,
        not_before=not_before,
        not_after=not_after,
        key=subject_key,
    )


def _sign_weak(cert: x509.Certificate, ca_key: PrivateKey, algorithm: str) -> bytes:
    """Re-sign an RSA/SHA-256 certificate with SHA-1 or MD5 by swapping same-length algorithm IDs."""
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    der = cert.public_bytes(serialization.Encoding.DER)
    old_id, new_id = _RSA_ALG_IDS["sha256"], _RSA_ALG_IDS[algorithm]
    tbs = cert.tbs_certificate_bytes
    new_tbs = tbs.replace(old_id, new_id, 1)
    signature = ca_key.sign(new_tbs, padding.PKCS1v15(), _HASHES[algorithm])
    old_signature = cert.signature
    if len(signature) != len(old_signature):
        raise ValueError("weak signature length differs; cannot rewrite the certificate")
    start = der.index(tbs)
    rest = der[start + len(tbs) :]
    rest = rest.replace(old_id, new_id, 1).replace(old_signature, signature, 1)
    out = der[:start] + new_tbs + rest
    x509.load_der_x509_certificate(out)  # sanity: still a parsable certificate
    return out

