"""Certificate analysis: what SSTP needs to know about a certificate, read from its DER.

DER carries everything except whether Windows holds the private key, so `has_private_key` (and the
friendly name) come from the probe (DOMAIN 6).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

SERVER_AUTH_OID = ExtendedKeyUsageOID.SERVER_AUTH.dotted_string  # 1.3.6.1.5.5.7.3.1
ANY_PURPOSE_OID = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string  # 2.5.29.37.0
IKE_INTERMEDIATE_OID = "1.3.6.1.5.5.8.2.2"
WEAK_SIGNATURE_HASHES = frozenset({"md5", "sha1", "md2", "md4"})
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class CertificateInfo:
    """The facts about one certificate that the diagnosis rules use."""

    thumbprint: str  # SHA-1 of the DER, upper-case hex (Windows `Thumbprint`, HTTP.sys `SslCertHash`)
    sha256: str  # SHA-256 of the DER, upper-case hex (`SHA256CertificateHash`)
    subject: str
    common_name: str | None
    dns_names: tuple[str, ...]
    issuer: str
    serial_number: str
    not_before: datetime  # UTC
    not_after: datetime  # UTC
    ekus: tuple[str, ...] | None  # dotted OIDs; None when the certificate has no EKU extension
    key_type: str  # "RSA", "EC", "DSA", "Ed25519", "Ed448" or "unknown"
    key_size: int | None
    signature_hash: str | None  # "sha256", "sha1", "md5", ... (None for Ed25519/Ed448)
    crl_urls: tuple[str, ...]
    ocsp_urls: tuple[str, ...]
    self_signed: bool
    has_private_key: bool
    friendly_name: str

    @property
    def server_auth(self) -> bool:
        """Server Authentication EKU present."""
        return self.ekus is not None and SERVER_AUTH_OID in self.ekus

    @property
    def any_purpose(self) -> bool:
        """anyExtendedKeyUsage (Windows "All Purpose") present."""
        return self.ekus is not None and ANY_PURPOSE_OID in self.ekus

    @property
    def usable_for_sstp(self) -> bool:
        """Server Authentication or All Purpose EKU, as SSTP's default selection requires (DOMAIN 1.1).

        A certificate without any EKU extension does not qualify: the rule reads "EKU Server
        Authentication or All Purpose", and a VPN certificate should state its purpose explicitly.
        """
        return self.server_auth or self.any_purpose

    @property
    def names(self) -> tuple[str, ...]:
        """The subject CN followed by the SAN DNS names (duplicates removed)."""
        out: list[str] = []
        for name in ((self.common_name,) if self.common_name else ()) + self.dns_names:
            if name.lower() not in (n.lower() for n in out):
                out.append(name)
        return tuple(out)

    def matches(self, name: str) -> bool:
        """Whether `name` matches the CN or a SAN DNS name (wildcards per RFC 6125)."""
        return any(name_matches(pattern, name) for pattern in self.names)

    def is_time_valid(self, now: datetime) -> bool:
        return self.not_before <= now <= self.not_after  # RFC 5280: both bounds are inclusive

    @property
    def weak_reasons(self) -> tuple[str, ...]:
        reasons: list[str] = []
        if self.key_type == "RSA" and self.key_size is not None and self.key_size < MIN_RSA_BITS:
            reasons.append(f"RSA key of {self.key_size} bits (under {MIN_RSA_BITS})")
        if self.signature_hash in WEAK_SIGNATURE_HASHES:
            reasons.append(f"{self.signature_hash.upper()} signature")
        return tuple(reasons)

    @property
    def has_revocation_url(self) -> bool:
        return bool(self.crl_urls or self.ocsp_urls)


def analyse_certificate(der: bytes, *, has_private_key: bool = False, friendly_name: str = "") -> CertificateInfo:
    """Analyse a DER certificate. Raises ValueError when it cannot be parsed."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except Exception as exc:  # cryptography raises ValueError, sometimes other types for odd input
        raise ValueError(str(exc) or type(exc).__name__) from None
    return _analyse(cert, der, has_private_key, friendly_name)


def _analyse(cert: x509.Certificate, der: bytes, has_private_key: bool, friendly_name: str) -> CertificateInfo:
    # Each extension is read on its own: a malformed one must not hide the others.
    common_name: str | None = None
    try:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if cns:
            value = cns[0].value
            common_name = value if isinstance(value, str) else value.decode("utf-8", "replace")
    except ValueError:
        common_name = None
    try:
        subject = cert.subject.rfc4514_string()
    except ValueError:
        subject = ""
    try:
        issuer = cert.issuer.rfc4514_string()
    except ValueError:
        issuer = ""

    dns_names: tuple[str, ...] = ()
    ekus: tuple[str, ...] | None = None
    crl_urls: list[str] = []
    ocsp_urls: list[str] = []
    try:
        extensions = list(cert.extensions)
    except Exception:
        extensions = []
    for ext in extensions:
        value = ext.value
        if isinstance(value, x509.SubjectAlternativeName):
            dns_names = tuple(value.get_values_for_type(x509.DNSName))
        elif isinstance(value, x509.ExtendedKeyUsage):
            ekus = tuple(oid.dotted_string for oid in value)
        elif isinstance(value, x509.CRLDistributionPoints):
            for point in value:
                for general in point.full_name or ():
                    if isinstance(general, x509.UniformResourceIdentifier):
                        crl_urls.append(general.value)
        elif isinstance(value, x509.AuthorityInformationAccess):
            for access in value:
                if access.access_method == AuthorityInformationAccessOID.OCSP and isinstance(
                    access.access_location, x509.UniformResourceIdentifier
                ):
                    ocsp_urls.append(access.access_location.value)

    key_type, key_size = "unknown", None
    try:
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            key_type, key_size = "RSA", key.key_size
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key_type, key_size = "EC", key.curve.key_size
        elif isinstance(key, dsa.DSAPublicKey):
            key_type, key_size = "DSA", key.key_size
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key_type, key_size = "Ed25519", 256
        elif isinstance(key, ed448.Ed448PublicKey):
            key_type, key_size = "Ed448", 456
    except Exception:
        pass

    signature_hash: str | None
    try:
        algorithm = cert.signature_hash_algorithm
        signature_hash = algorithm.name.lower() if algorithm is not None else None
    except Exception:
        # An algorithm cryptography does not support; fall back on the OID's name.
        signature_hash = _hash_from_oid(cert.signature_algorithm_oid.dotted_string)

    return CertificateInfo(
        thumbprint=hashlib.sha1(der).hexdigest().upper(),
        sha256=hashlib.sha256(der).hexdigest().upper(),
        subject=subject,
        common_name=common_name,
        dns_names=dns_names,
        issuer=issuer,
        serial_number=format(cert.serial_number, "X"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        ekus=ekus,
        key_type=key_type,
        key_size=key_size,
        signature_hash=signature_hash,
        crl_urls=tuple(crl_urls),
        ocsp_urls=tuple(ocsp_urls),
        self_signed=cert.subject == cert.issuer,
        has_private_key=has_private_key,
        friendly_name=friendly_name,
    )


_SIGNATURE_OID_HASHES = {
    "1.2.840.113549.1.1.2": "md2",
    "1.2.840.113549.1.1.3": "md4",
    "1.2.840.113549.1.1.4": "md5",
    "1.2.840.113549.1.1.5": "sha1",
    "1.2.840.10045.4.1": "sha1",
    "1.2.840.10040.4.3": "sha1",
}


def _hash_from_oid(oid: str) -> str | None:
    return _SIGNATURE_OID_HASHES.get(oid)


def _clean(name: str) -> str:
    return name.strip().rstrip(".").lower()


def name_matches(pattern: str, name: str) -> bool:
    """RFC 6125 host name matching, case-insensitive and tolerant of a trailing dot.

    A wildcard is only honoured as the whole left-most label and covers exactly one label:
    `*.example.com` matches `vpn.example.com`, but neither `a.b.example.com` nor `example.com`.
    Wildcards directly under a top-level domain (`*.com`) and partial-label wildcards (`vpn*.example.com`)
    never match.
    """
    p, n = _clean(pattern), _clean(name)
    if not p or not n:
        return False
    if "*" not in p:
        return p == n
    p_labels, n_labels = p.split("."), n.split(".")
    if p_labels[0] != "*" or any("*" in label for label in p_labels[1:]):
        return False
    if len(p_labels) < 3 or len(n_labels) != len(p_labels):
        return False
    return bool(n_labels[0]) and n_labels[1:] == p_labels[1:]
