"""Certificate analysis: what SSTP needs to know about a certificate, read from its DER.

DER carries everything except whether Windows holds the private key, so `has_private_key` (and the
friendly name) come from the probe (DOMAIN 6).

Every part of a certificate is read on its own and guarded (issue 8): a malformed subject, an
extension `cryptography` refuses or an unknown key type must not hide the checks that still apply.
What could not be read is listed in `CertificateInfo.problems`. Warnings `cryptography` emits while
reading (negative serial numbers, DSA, odd policy text: each announced to become an error in a later
release) are recorded there too instead of escaping to the caller.

The judgement follows DESIGN 4 [2]: `unusable_reasons` (SSTP_CERT_UNUSABLE: Windows cannot serve the
certificate to default SSTP clients), `weak_reasons` (SSTP_CERT_WEAK: RSA 1,024 to 2,047 bits, or a
SHA-1 signature) and `matches(public_name)`, host name matching as RFC 6125 and Windows' SSL policy
do it.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import warnings
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import idna
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

SERVER_AUTH_OID = ExtendedKeyUsageOID.SERVER_AUTH.dotted_string  # 1.3.6.1.5.5.7.3.1
ANY_PURPOSE_OID = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string  # 2.5.29.37.0
IKE_INTERMEDIATE_OID = "1.3.6.1.5.5.8.2.2"
MIN_RSA_BITS = 2048  # under this: SSTP_CERT_WEAK
MIN_USABLE_RSA_BITS = 1024  # under this Windows refuses the key: SSTP_CERT_UNUSABLE (DESIGN 4 [2])
# The curves Windows clients enable by default for ECDSA server certificates (DESIGN 4 [2]).
USABLE_CURVES = frozenset({"secp256r1", "secp384r1"})
UNUSABLE_SIGNATURE_HASHES = frozenset({"md2", "md4", "md5"})
WEAK_SIGNATURE_HASHES = frozenset({"sha1"})

# Signature algorithms `cryptography` may not name, by OID. The bare digest OIDs (1.2.840.113549.2.x)
# appear as signature algorithms in old certificates (cryptography-vectors' v1_cert.pem).
_SIGNATURE_OID_HASHES = {
    "1.2.840.113549.1.1.2": "md2",
    "1.2.840.113549.1.1.3": "md4",
    "1.2.840.113549.1.1.4": "md5",
    "1.2.840.113549.2.2": "md2",
    "1.2.840.113549.2.4": "md4",
    "1.2.840.113549.2.5": "md5",
    "1.2.840.113549.1.1.5": "sha1",
    "1.3.14.3.2.29": "sha1",
    "1.2.840.10045.4.1": "sha1",
    "1.2.840.10040.4.3": "sha1",
}

# Extensions RFC 5280 defines (section 4.2): a client may process these when marked critical. Any other
# extension marked critical makes a conforming client reject the certificate.
RFC5280_EXTENSION_OIDS = frozenset(
    {
        "2.5.29.9",  # subject directory attributes
        "2.5.29.14",  # subject key identifier
        "2.5.29.15",  # key usage
        "2.5.29.17",  # subject alternative name
        "2.5.29.18",  # issuer alternative name
        "2.5.29.19",  # basic constraints
        "2.5.29.30",  # name constraints
        "2.5.29.31",  # CRL distribution points
        "2.5.29.32",  # certificate policies
        "2.5.29.33",  # policy mappings
        "2.5.29.35",  # authority key identifier
        "2.5.29.36",  # policy constraints
        "2.5.29.37",  # extended key usage
        "2.5.29.46",  # freshest CRL
        "2.5.29.54",  # inhibit anyPolicy
        "1.3.6.1.5.5.7.1.1",  # authority information access
        "1.3.6.1.5.5.7.1.11",  # subject information access
    }
)


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
    ip_addresses: tuple[str, ...] = ()  # IP-address SANs, compressed text form
    curve: str | None = None  # EC keys: the curve's name (`secp256r1`, ...)
    unknown_critical_extensions: tuple[str, ...] = ()  # dotted OIDs
    extensions_readable: bool = True
    problems: tuple[str, ...] = ()  # parts that could not be read, warnings raised while reading

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
        """The subject CN followed by the SAN DNS names (duplicates removed), for display."""
        out: list[str] = []
        for name in ((self.common_name,) if self.common_name else ()) + self.dns_names:
            if name.lower() not in (n.lower() for n in out):
                out.append(name)
        return tuple(out)

    @property
    def identities(self) -> tuple[str, ...]:
        """The names TLS clients match a host name against (DESIGN 4 [2]): the DNS SANs when there is
        any, else the CN; IP-address SANs come after them."""
        dns = self.dns_names or ((self.common_name,) if self.common_name else ())
        return dns + self.ip_addresses

    def matches(self, name: str) -> bool:
        """Whether a client dialling `name` accepts this certificate's names (DESIGN 4 [2])."""
        return host_matches(name, dns_names=self.dns_names, common_name=self.common_name, ip_addresses=self.ip_addresses)

    def is_time_valid(self, now: datetime) -> bool:
        return self.not_before <= now <= self.not_after  # RFC 5280: both bounds are inclusive

    @property
    def unusable_reasons(self) -> tuple[str, ...]:
        """Why Windows' TLS stack cannot serve this certificate to default SSTP clients (DESIGN 4 [2])."""
        reasons: list[str] = []
        if self.key_type == "RSA":
            if self.key_size is not None and self.key_size < MIN_USABLE_RSA_BITS:
                reasons.append(f"RSA key of {self.key_size} bits (Windows refuses keys under {MIN_USABLE_RSA_BITS})")
        elif self.key_type == "EC":
            if self.curve not in USABLE_CURVES:
                reasons.append(f"EC key on curve {self.curve or 'unknown'} (clients enable only P-256 and P-384)")
        else:
            reasons.append(f"{self.key_type} key (SSTP clients need RSA or ECDSA)")
        if self.signature_hash in UNUSABLE_SIGNATURE_HASHES:
            reasons.append(f"{self.signature_hash.upper()} signature")
        if self.unknown_critical_extensions:
            reasons.append("critical extension(s) clients must reject: " + ", ".join(self.unknown_critical_extensions))
        if not self.extensions_readable:
            reasons.append("its extensions cannot be parsed")
        return tuple(reasons)

    @property
    def weak_reasons(self) -> tuple[str, ...]:
        """RSA of 1,024 to 2,047 bits, or a SHA-1 signature (DESIGN 4 [2]); unusable keys are not weak."""
        reasons: list[str] = []
        if self.key_type == "RSA" and self.key_size is not None and MIN_USABLE_RSA_BITS <= self.key_size < MIN_RSA_BITS:
            reasons.append(f"RSA key of {self.key_size} bits (under {MIN_RSA_BITS})")
        if self.signature_hash in WEAK_SIGNATURE_HASHES:
            reasons.append(f"{self.signature_hash.upper()} signature")
        return tuple(reasons)

    @property
    def has_revocation_url(self) -> bool:
        return bool(self.crl_urls or self.ocsp_urls)


def analyse_certificate(der: bytes, *, has_private_key: bool = False, friendly_name: str = "") -> CertificateInfo:
    """Analyse a DER certificate. Raises ValueError when it cannot be parsed at all."""
    return _analyse(der, has_private_key, friendly_name)


#: Distinct certificates remembered per process. A sweep sees the same few certificates on every
#: server at every check; the analysis is a pure function of these three values and its result is
#: immutable (frozen, tuples only), so it is computed once per certificate (failures are not kept).
_REMEMBERED_CERTIFICATES = 4096


@functools.lru_cache(maxsize=_REMEMBERED_CERTIFICATES)
def _analyse(der: bytes, has_private_key: bool, friendly_name: str) -> CertificateInfo:
    with warnings.catch_warnings(record=True) as caught:
        # Recorded, not raised: a deprecation that a later `cryptography` turns into an error must show
        # up as a problem of the certificate, not as a crash of the check.
        warnings.simplefilter("always")
        try:
            cert = x509.load_der_x509_certificate(der)
        except Exception as exc:  # cryptography raises ValueError, sometimes other types for odd input
            raise ValueError(str(exc) or type(exc).__name__) from None
        reader = _Reader(cert)
        info = reader.analyse(der, has_private_key, friendly_name)
    notes = tuple(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    if notes:
        info = _with_problems(info, notes)
    return info


def _with_problems(info: CertificateInfo, extra: tuple[str, ...]) -> CertificateInfo:
    return replace(info, problems=info.problems + extra)


class _Reader:
    """Reads one part of a certificate at a time; a part that fails is noted and left out."""

    def __init__(self, cert: x509.Certificate) -> None:
        self.cert = cert
        self.problems: list[str] = []

    def read(self, what: str, getter: Any, default: Any) -> Any:
        try:
            return getter()
        except Exception as exc:  # any failure of one part: note it, keep the rest
            self.problems.append(f"{what}: {str(exc)[:200] or type(exc).__name__}")
            return default

    def analyse(self, der: bytes, has_private_key: bool, friendly_name: str) -> CertificateInfo:
        cert = self.cert
        subject = self.read("subject", lambda: cert.subject.rfc4514_string(), "")
        issuer = self.read("issuer", lambda: cert.issuer.rfc4514_string(), "")
        # Guarded like the rest: comparing names raises on an attribute cryptography refuses (issue 8).
        self_signed = self.read("subject/issuer comparison", lambda: cert.subject == cert.issuer, False)
        extensions = self.read("extensions", lambda: list(cert.extensions), None)
        key_type, key_size, curve = self.read("public key", self._key, ("unknown", None, None))
        ext = _Extensions(extensions or [])
        return CertificateInfo(
            thumbprint=hashlib.sha1(der).hexdigest().upper(),
            sha256=hashlib.sha256(der).hexdigest().upper(),
            subject=subject,
            common_name=self.read("common name", self._common_name, None),
            dns_names=ext.dns_names,
            issuer=issuer,
            serial_number=self.read("serial number", lambda: format(cert.serial_number, "X"), ""),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            ekus=ext.ekus,
            key_type=key_type,
            key_size=key_size,
            signature_hash=self.read("signature algorithm", self._signature_hash, None),
            crl_urls=ext.crl_urls,
            ocsp_urls=ext.ocsp_urls,
            self_signed=bool(self_signed),
            has_private_key=has_private_key,
            friendly_name=friendly_name,
            ip_addresses=ext.ip_addresses,
            curve=curve,
            unknown_critical_extensions=ext.unknown_critical,
            extensions_readable=extensions is not None,
            problems=tuple(dict.fromkeys(self.problems)),
        )

    def _common_name(self) -> str | None:
        cns = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not cns:
            return None
        value = cns[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")

    def _key(self) -> tuple[str, int | None, str | None]:
        key = self.cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            return "RSA", key.key_size, None
        if isinstance(key, ec.EllipticCurvePublicKey):
            return "EC", key.curve.key_size, key.curve.name
        if isinstance(key, ed25519.Ed25519PublicKey):
            return "Ed25519", 256, None
        if isinstance(key, ed448.Ed448PublicKey):
            return "Ed448", 456, None
        # Recognised by name: touching `dsa.DSAPublicKey` raises cryptography's DSA deprecation warning.
        if "DSA" in type(key).__name__:
            return "DSA", getattr(key, "key_size", None), None
        return "unknown", None, None

    def _signature_hash(self) -> str | None:
        oid = self.cert.signature_algorithm_oid.dotted_string
        try:
            algorithm = self.cert.signature_hash_algorithm
        except Exception:
            # An algorithm cryptography does not support (MD2, bare digest OIDs): name it by its OID.
            return _SIGNATURE_OID_HASHES.get(oid)
        return algorithm.name.lower() if algorithm is not None else _SIGNATURE_OID_HASHES.get(oid)


class _Extensions:
    """The extension values the rules need, from a list `cryptography` could parse."""

    def __init__(self, extensions: list[x509.Extension[x509.ExtensionType]]) -> None:
        self.dns_names: tuple[str, ...] = ()
        self.ip_addresses: tuple[str, ...] = ()
        self.ekus: tuple[str, ...] | None = None
        crl: list[str] = []
        ocsp: list[str] = []
        unknown: list[str] = []
        for ext in extensions:
            value = ext.value
            if ext.critical and ext.oid.dotted_string not in RFC5280_EXTENSION_OIDS:
                unknown.append(ext.oid.dotted_string)
            if isinstance(value, x509.SubjectAlternativeName):
                self.dns_names = tuple(value.get_values_for_type(x509.DNSName))
                self.ip_addresses = tuple(str(ip) for ip in value.get_values_for_type(x509.IPAddress))
            elif isinstance(value, x509.ExtendedKeyUsage):
                self.ekus = tuple(oid.dotted_string for oid in value)
            elif isinstance(value, x509.CRLDistributionPoints):
                crl.extend(_uris(g for point in value for g in (point.full_name or ())))
            elif isinstance(value, x509.AuthorityInformationAccess):
                ocsp.extend(
                    _uris(a.access_location for a in value if a.access_method == AuthorityInformationAccessOID.OCSP)
                )
        self.crl_urls, self.ocsp_urls, self.unknown_critical = tuple(crl), tuple(ocsp), tuple(unknown)


def _uris(names: Any) -> list[str]:
    return [n.value for n in names if isinstance(n, x509.UniformResourceIdentifier)]


# ---------------------------------------------------------------------------------------------------
# Host name matching (DESIGN 4 [2], RFC 6125)


def host_matches(
    name: str, *, dns_names: tuple[str, ...], common_name: str | None, ip_addresses: tuple[str, ...] = ()
) -> bool:
    """Whether a TLS client dialling `name` accepts a certificate with these identities.

    An IP address is matched only against IP-address SANs. A host name is matched against the DNS SANs
    when the certificate has any, else against the CN. A name with a trailing dot never matches (the
    configuration refuses one; every reference implementation does too).
    """
    address = _ip(name)
    if address is not None:
        return any(_ip(candidate) == address for candidate in ip_addresses)
    wanted = to_a_label(name)
    if wanted is None:
        return False
    patterns = dns_names if dns_names else ((common_name,) if common_name else ())
    return any(name_matches(pattern, wanted) for pattern in patterns)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def to_a_label(name: str) -> str | None:
    """A host name in lower-case ASCII (U-labels converted with IDNA 2008/UTS 46), or None when it is
    not a valid host name."""
    text = name.strip()
    if not text or text.endswith("."):
        return None
    if text.isascii():
        return text.lower()
    try:
        return idna.encode(text, uts46=True).decode("ascii").lower()
    except idna.IDNAError:
        return None


def name_matches(pattern: str, name: str) -> bool:
    """RFC 6125 matching of one DNS identity (`pattern`) against a host name, case-insensitive.

    A wildcard counts only as the whole left-most label with at least two labels after it, and covers
    exactly one label: `*.example.com` matches `vpn.example.com`, but neither `a.b.example.com` nor
    `example.com`; `*.com`, `vpn*.example.com` and `*.*.example.com` match nothing. A pattern or name
    with a trailing dot matches nothing.
    """
    p, n = to_a_label(pattern), to_a_label(name)
    if not p or not n:
        return False
    if "*" not in p:
        return p == n
    p_labels, n_labels = p.split("."), n.split(".")
    if p_labels[0] != "*" or any("*" in label for label in p_labels[1:]):
        return False
    if len(p_labels) < 3 or len(n_labels) != len(p_labels) or any(not label for label in p_labels[1:]):
        return False
    return bool(n_labels[0]) and n_labels[1:] == p_labels[1:]
