"""Rule family: the SSTP certificate as Windows clients judge it, and its remedy (bind a better one).

SSTP_CERT_NOT_FOUND, SSTP_CERT_EXPIRED, SSTP_CERT_EXPIRING, SSTP_CERT_RENEWAL_NOT_BOUND,
SSTP_CERT_NO_PRIVATE_KEY, SSTP_CERT_EKU, SSTP_CERT_NAME_MISMATCH, SSTP_CERT_UNUSABLE, SSTP_CERT_WEAK,
SSTP_CERT_NO_REVOCATION_URL, CERTIFICATE_UNREADABLE, SSTP_OFFLOAD_HASH (DESIGN 4, 4 [2]; DOMAIN 1.1, 6).

The remedy of every certificate finding is the same: bind the certificate `commands.analysis` chose
(the best one the same judgement accepts), when it is better on the point the finding makes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Any

from commands.analysis import Analysis, certificate_evidence
from commands.certs import CertificateInfo
from commands.model import Subject, format_time
from commands.rules.base import (
    DIRECTACCESS_GUIDANCE,
    Collected,
    Detected,
    Remedy,
    finding,
    rebind,
    rebind_guidance,
)
from commands.snapshot import StoredCertificate, normalise_hex

RENEW_GUIDANCE = "Renew or replace the certificate, then check again: the bot offers to bind the new one."



class Id(StrEnum):
    """The finding IDs this family raises (DESIGN 4), str-valued: JSON and text comparisons stay the same."""

    SSTP_CERT_NOT_FOUND = "SSTP_CERT_NOT_FOUND"
    SSTP_CERT_EXPIRED = "SSTP_CERT_EXPIRED"
    SSTP_CERT_EXPIRING = "SSTP_CERT_EXPIRING"
    SSTP_CERT_RENEWAL_NOT_BOUND = "SSTP_CERT_RENEWAL_NOT_BOUND"
    SSTP_CERT_NO_PRIVATE_KEY = "SSTP_CERT_NO_PRIVATE_KEY"
    SSTP_CERT_EKU = "SSTP_CERT_EKU"
    SSTP_CERT_NAME_MISMATCH = "SSTP_CERT_NAME_MISMATCH"
    SSTP_CERT_UNUSABLE = "SSTP_CERT_UNUSABLE"
    SSTP_CERT_WEAK = "SSTP_CERT_WEAK"
    SSTP_CERT_NO_REVOCATION_URL = "SSTP_CERT_NO_REVOCATION_URL"
    CERTIFICATE_UNREADABLE = "CERTIFICATE_UNREADABLE"
    SSTP_OFFLOAD_HASH = "SSTP_OFFLOAD_HASH"


# What the catalogue reads (docs/findings.md is tested against it): every ID, and those a remedy can resolve.
FINDINGS: frozenset[Id] = frozenset(Id)
FIXABLE: frozenset[Id] = frozenset({Id.SSTP_CERT_NOT_FOUND, Id.SSTP_CERT_EXPIRED, Id.SSTP_CERT_EXPIRING, Id.SSTP_CERT_RENEWAL_NOT_BOUND, Id.SSTP_CERT_NO_PRIVATE_KEY, Id.SSTP_CERT_EKU, Id.SSTP_CERT_NAME_MISMATCH, Id.SSTP_CERT_UNUSABLE, Id.SSTP_CERT_WEAK, Id.SSTP_CERT_NO_REVOCATION_URL})


def detect(a: Analysis, prior: Sequence[Detected] = ()) -> list[Detected]:
    """The certificate findings of this snapshot, each with its remedy."""
    out = Collected()
    _not_found(a, out)
    cert = a.sstp_certificate
    if cert is not None:
        _private_key(a, cert, out)
        if cert.info is not None:
            _judge(a, cert, cert.info, out)
    _unreadable(a, out)
    _offload(a, out)
    return out.items


def _replace(a: Analysis) -> Remedy:
    """Bind the chosen certificate instead of the SSTP certificate (or say why the bot cannot)."""
    if a.replaces_certificate:
        return rebind(a)
    return Remedy(guidance=rebind_guidance(a) or _kept_guidance(a))


def _replace_if(a: Analysis, better: Callable[[CertificateInfo], bool]) -> Remedy:
    """Bind the chosen certificate when it is `better` on this finding's point; else renew guidance."""
    target = a.target
    if a.replaces_certificate and target is not None and target.info is not None and better(target.info):
        return rebind(a)
    if a.target is None or not a.can_restart:
        return Remedy(guidance=rebind_guidance(a) or RENEW_GUIDANCE)
    preferred = a.preferred
    if a.held_back_by_directaccess and preferred is not None and preferred.info is not None and better(preferred.info):
        return Remedy(guidance=DIRECTACCESS_GUIDANCE)
    return Remedy(guidance=RENEW_GUIDANCE)


def _kept_guidance(a: Analysis) -> str:
    """Why the SSTP certificate stays although a fix could bind: a better one is in the store but
    DirectAccess forbids the change, or there is none (renew)."""
    return DIRECTACCESS_GUIDANCE if a.held_back_by_directaccess else RENEW_GUIDANCE


def _base(a: Analysis, cert: StoredCertificate) -> dict[str, Any]:
    return {
        "certificate": certificate_evidence(cert),
        "candidate": certificate_evidence(a.preferred if a.preferred is not cert else None),
    }


def _not_found(a: Analysis, out: Collected) -> None:
    sstp = a.snapshot.sstp
    if not (a.https and sstp is not None and a.snapshot.certificates is not None and a.sstp_certificate is None):
        return
    configured = sstp.sha256_hash or sstp.sha1_hash or (sstp.remote_access.thumbprint if sstp.remote_access else None)
    out.add(
        finding(
            Id.SSTP_CERT_NOT_FOUND,
            "critical",
            "The certificate SSTP is configured with is not in LocalMachine\\My"
            if configured
            else "No SSTP certificate is configured",
            "RRAS stores the SSTP certificate by hash, not by name. After a renewal or a deletion the hash "
            "matches nothing in the store and SSTP cannot complete TLS until a certificate is bound again "
            "in RRAS and Remote Access restarted.",
            Subject(thumbprint=configured),
            sstp_sha256_hash=sstp.sha256_hash,
            sstp_sha1_hash=sstp.sha1_hash,
            remote_access_thumbprint=sstp.remote_access.thumbprint if sstp.remote_access else None,
            store_thumbprints=[c.thumbprint for c in a.snapshot.certificates],
            candidate=certificate_evidence(a.preferred),
        ),
        _replace(a),
    )


def _private_key(a: Analysis, cert: StoredCertificate, out: Collected) -> None:
    if cert.key_usable:
        return
    unusable = cert.has_private_key and cert.private_key_usable is False
    out.add(
        finding(
            Id.SSTP_CERT_NO_PRIVATE_KEY,
            "critical",
            f"The SSTP certificate {cert.thumbprint} "
            + ("has a private key Windows cannot open" if unusable else "has no private key"),
            "HTTP.sys and Schannel need the private key of the certificate to complete TLS (Schannel "
            "event 36870)."
            + (
                " The store says the key exists, but opening it failed (missing key file, wrong "
                "permissions for the service, or a provider Schannel cannot use)."
                if unusable
                else ""
            )
            + " Import the certificate with its key (PFX) or bind a certificate that has one.",
            Subject(thumbprint=cert.thumbprint),
            private_key_usable=cert.private_key_usable,
            **_base(a, cert),
        ),
        _replace(a),
    )


def _judge(a: Analysis, cert: StoredCertificate, info: CertificateInfo, out: Collected) -> None:
    for rule in (_validity, _renewal, _eku, _name, _unusable, _weak, _revocation):
        rule(a, cert, info, out)


def _validity(a: Analysis, cert: StoredCertificate, info: CertificateInfo, out: Collected) -> None:
    subject = Subject(thumbprint=cert.thumbprint)
    if a.now >= info.not_after or a.now < info.not_before:
        expired = a.now >= info.not_after
        out.add(
            finding(
                Id.SSTP_CERT_EXPIRED,
                "critical",
                f"The SSTP certificate {'expired on' if expired else 'is not valid before'} "
                f"{(info.not_after if expired else info.not_before):%Y-%m-%d}",
                "Clients refuse an expired or not yet valid certificate (0x800B0101 CERT_E_EXPIRED, RasClient "
                "event 20227). A valid certificate must be bound in RRAS.",
                subject,
                not_before=format_time(info.not_before),
                not_after=format_time(info.not_after),
                **_base(a, cert),
            ),
            _replace(a),
        )
        return
    warn_days = a.server.cert_expiry_warning_days
    if info.not_after - a.now > timedelta(days=warn_days):
        return
    days_left = (info.not_after - a.now).days
    out.add(
        finding(
            Id.SSTP_CERT_EXPIRING,
            "warning",
            f"The SSTP certificate expires in {days_left} day(s), on {info.not_after:%Y-%m-%d}",
            f"Renew it before {info.not_after:%Y-%m-%d}; after renewal the new certificate must also be bound "
            "in RRAS (the binding points at a hash, not a name) and Remote Access restarted.",
            subject,
            not_after=format_time(info.not_after),
            days_left=days_left,
            warning_days=warn_days,
            **_base(a, cert),
        ),
        _replace_if(a, lambda t: t.not_after - a.now > timedelta(days=warn_days)),
    )


def _renewal(a: Analysis, cert: StoredCertificate, info: CertificateInfo, out: Collected) -> None:
    renewal = a.renewal
    if renewal is None or renewal.info is None:
        return
    out.add(
        finding(
            Id.SSTP_CERT_RENEWAL_NOT_BOUND,
            "warning",
            f"A renewed certificate (expires {renewal.info.not_after:%Y-%m-%d}) is in the store but SSTP uses the old one",
            "The store holds a newer valid certificate for the same names, but RRAS still points at the "
            "old certificate's hash. SSTP keeps using the old one until the new one is bound in RRAS.",
            Subject(thumbprint=renewal.thumbprint),
            certificate=certificate_evidence(cert),
            renewal=certificate_evidence(renewal),
        ),
        _replace(a),
    )


def _eku(a: Analysis, cert: StoredCertificate, info: CertificateInfo, out: Collected) -> None:
    if info.usable_for_sstp:
        return
    out.add(
        finding(
            Id.SSTP_CERT_EKU,
            "critical",
            "The SSTP certificate lacks the Server Authentication EKU",
            "SSTP needs a certificate with Extended Key Usage Server Authentication (1.3.6.1.5.5.7.3.1) "
            "or All Purpose." + (" This certificate has no EKU extension." if info.ekus is None else ""),
            Subject(thumbprint=cert.thumbprint),
            ekus=list(info.ekus) if info.ekus is not None else None,
            **_base(a, cert),
        ),
        _replace(a),
    )


def _name(a: Analysis, cert: StoredCertificate, info: CertificateInfo, out: Collected) -> None:
    """DESIGN 4 [2]: matched as TLS clients match (RFC 6125): DNS SANs when present, else the CN."""
    if a.public_name is None or info.matches(a.public_name):
        return
    if info.dns_names:
        how = f"its DNS names ({', '.join(info.dns_names)}) do not match it"
        if info.common_name and info.common_name.lower() == a.public_name.lower():
            how += " (the subject CN does, but clients ignore the CN when the certificate has DNS names)"
    elif info.common_name:
        how = f"its subject CN ({info.common_name}) does not match it"
    else:
        how = "it names no host at all"
    if info.ip_addresses:
        how += f"; IP addresses: {', '.join(info.ip_addresses)}"
    out.add(
        finding(
            Id.SSTP_CERT_NAME_MISMATCH,
            "critical",
            f"The SSTP certificate does not cover {a.public_name}",
            f"Clients dial {a.public_name}, but {how}, so clients reject the certificate. An IP address "
            "is matched only against IP-address SANs, a host name only against the DNS SANs when there "
            "are any (else the CN), and a wildcard only as the whole left-most label.",
            Subject(thumbprint=cert.thumbprint),
            public_name=a.public_name,
            names=list(info.names),
            identities=list(info.identities),
            **_base(a, cert),
        ),
        _replace(a),
    )


def _unusable(a: Analysis, cert: StoredCertificate, info: CertificateInfo, out: Collected) -> None:
    """DESIGN 4 [2]: a key, curve, signature or critical extension Windows cannot serve to clients."""
    reasons = info.unusable_reasons
    if not reasons:
        return
    out.add(
        finding(
            Id.SSTP_CERT_UNUSABLE,
            "critical",
            f"Windows cannot serve the SSTP certificate to VPN clients: {'; '.join(reasons)}",
            "Windows' TLS stack serves SSTP clients RSA (1,024 bits or more) or ECDSA on P-256/P-384 "
            "certificates, refuses MD2/MD4/MD5 signatures, and clients must reject a certificate with a "
            "critical extension they do not know. Issue an RSA 2048+ or ECDSA P-256/P-384 certificate "
            "signed with SHA-256 or stronger.",
            Subject(thumbprint=cert.thumbprint),
            reasons=list(reasons),
            key_type=info.key_type,
            key_size=info.key_size,
            curve=info.curve,
            signature_hash=info.signature_hash,
            unknown_critical_extensions=list(info.unknown_critical_extensions),
            problems=list(info.problems),
            **_base(a, cert),
        ),
        _replace(a),
    )


def _weak(a: Analysis, cert: StoredCertificate, info: CertificateInfo, out: Collected) -> None:
    if not info.weak_reasons:
        return
    out.add(
        finding(
            Id.SSTP_CERT_WEAK,
            "warning",
            f"The SSTP certificate is weak: {', '.join(info.weak_reasons)}",
            "Use an RSA key of at least 2048 bits (or ECDSA) and a SHA-256 or stronger signature.",
            Subject(thumbprint=cert.thumbprint),
            key_type=info.key_type,
            key_size=info.key_size,
            signature_hash=info.signature_hash,
            **_base(a, cert),
        ),
        _replace_if(a, lambda t: not t.weak_reasons),
    )


def _revocation(a: Analysis, cert: StoredCertificate, info: CertificateInfo, out: Collected) -> None:
    if info.has_revocation_url:
        return
    out.add(
        finding(
            Id.SSTP_CERT_NO_REVOCATION_URL,
            "warning",
            "The SSTP certificate has no CRL distribution point and no OCSP URL",
            "Windows VPN clients check revocation; without a reachable CRL or OCSP responder they fail "
            "with 0x80092013 (CRYPT_E_REVOCATION_OFFLINE). Issue the certificate from a CA that publishes "
            "its CRL on the Internet.",
            Subject(thumbprint=cert.thumbprint),
            **_base(a, cert),
        ),
        _replace_if(a, lambda t: t.has_revocation_url),
    )


def _unreadable(a: Analysis, out: Collected) -> None:
    unreadable = [c for c in (a.snapshot.certificates or ()) if c.info is None]
    if not unreadable:
        return
    sstp_affected = any(a.is_sstp_certificate(c.thumbprint) for c in unreadable)
    out.add(
        finding(
            Id.CERTIFICATE_UNREADABLE,
            "warning" if sstp_affected else "info",
            f"{len(unreadable)} certificate(s) in LocalMachine\\My could not be analysed",
            "Their DER could not be parsed, so their names, usages and validity were not checked"
            + (" (this includes the SSTP certificate)." if sstp_affected else "."),
            certificates=[{"thumbprint": c.thumbprint, "error": c.error} for c in unreadable],
        )
    )


def _offload(a: Analysis, out: Collected) -> None:
    sstp = a.snapshot.sstp
    if sstp is None or a.https:
        return
    expected = normalise_hex(a.server.offload_sha256) if a.server.offload_sha256 else None
    if sstp.sha256_hash is not None and (expected is None or sstp.sha256_hash == expected):
        return
    out.add(
        finding(
            Id.SSTP_OFFLOAD_HASH,
            "critical",
            "TLS offload: SHA256CertificateHash is missing"
            if sstp.sha256_hash is None
            else "TLS offload: SHA256CertificateHash is not the load balancer's certificate",
            "With TLS offloaded (UseHttps = 0) SSTP validates the crypto binding against "
            "SHA256CertificateHash, which must be the SHA-256 hash of the certificate the load balancer "
            "presents. Otherwise clients connect and then drop (client RasSstp event 6). Set it with "
            "Enable-SstpOffload -CertificateHash and restart Remote Access.",
            sstp_sha256_hash=sstp.sha256_hash,
            expected_sha256=expected,
        )
    )
