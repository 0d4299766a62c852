"""Diagnosis: the findings of DESIGN 4 from one snapshot. Pure: data in, data out.

`analyse()` computes the facts every rule and the remediation plan share (the SSTP port, the SSTP
certificate, the bindings on that port, the certificate a fix would bind); `diagnose()` turns them into
findings and asks `commands.remediation` which of them its plan fixes, so `fixable` always agrees
with the plan that is proposed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from commands.certs import CertificateInfo
from commands.model import Finding, Severity, as_utc, format_time
from commands.server import ServerConfig
from commands.snapshot import (
    IisBinding,
    Listener,
    ServiceState,
    Snapshot,
    SslBinding,
    StoredCertificate,
    UrlReservation,
    normalise_guid,
    normalise_hex,
    parse_snapshot,
)

SSTP_APP_ID = "{ba195980-cd49-458b-9e23-c84ee0adcd75}"
IIS_APP_ID = "{4dc3e181-e14b-4a21-b022-59fc669b0914}"
KNOWN_APP_IDS = {SSTP_APP_ID: "SSTP (RRAS)", IIS_APP_ID: "IIS", "{5d89a20c-beab-4389-9447-324788eb944a}": "AD FS"}
# SSTP registers https://+:PORT/sra_{BA195980-CD49-458B-9E23-C84EE0ADCD75}/ (DOMAIN 5, 10).
SSTP_URL_RE = re.compile(r"/sra_\{ba195980-cd49-458b-9e23-c84ee0adcd75\}/?$", re.IGNORECASE)
HTTP_SYS_PID = 4
SSTP_EVENT_IDS = frozenset({8, 9, 12, 13, 18, 21})
SCHANNEL_EVENT_IDS = frozenset({36870})
EVENT_WINDOW = timedelta(hours=24)
WILDCARD_HOSTS = ("0.0.0.0", "[::]")

ALL_FINDING_IDS = (
    "SSTP_HASH_MISMATCH",
    "IIS_HTTPS_BINDING",
    "HTTPSYS_FOREIGN_BINDING",
    "HTTPSYS_BINDING_MISSING",
    "HTTPSYS_SNI_BINDING",
    "URLACL_CONFLICT",
    "SSTP_CERT_NOT_FOUND",
    "SSTP_CERT_EXPIRED",
    "SSTP_CERT_EXPIRING",
    "SSTP_CERT_RENEWAL_NOT_BOUND",
    "SSTP_CERT_NO_PRIVATE_KEY",
    "SSTP_CERT_EKU",
    "SSTP_CERT_NAME_MISMATCH",
    "SSTP_CERT_WEAK",
    "SSTP_CERT_NO_REVOCATION_URL",
    "SSTP_OFFLOAD_HASH",
    "REMOTEACCESS_STOPPED",
    "SSTP_NOT_LISTENING",
    "PORT_OWNED_BY_OTHER_PROCESS",
    "SSTP_ERROR_EVENTS",
    "NOT_ELEVATED",
    "PROBE_INCOMPLETE",
    "CERTIFICATE_UNREADABLE",
    "SSTP_IP_BINDING_MISMATCH",
)


def app_id_owner(app_id: str | None) -> str:
    """A readable owner name for an HTTP.sys AppId."""
    if not app_id:
        return "unknown"
    return KNOWN_APP_IDS.get(normalise_guid(app_id), f"another application {app_id}")


def is_sstp_app_id(app_id: str | None) -> bool:
    return bool(app_id) and normalise_guid(app_id or "") == SSTP_APP_ID


@dataclass(frozen=True)
class Analysis:
    """Facts derived once from a snapshot, shared by the diagnosis rules and the plan."""

    snapshot: Snapshot
    server: ServerConfig
    now: datetime
    port: int
    https: bool
    public_name: str | None
    sstp_certificate: StoredCertificate | None
    sstp_thumbprints: frozenset[str]  # SHA-1 values that identify the SSTP certificate
    ip_bindings: tuple[SslBinding, ...]  # on the SSTP port
    sni_bindings: tuple[SslBinding, ...]  # on the SSTP port
    url_conflicts: tuple[UrlReservation, ...]  # on the SSTP port, not SSTP's own
    iis_bindings: tuple[IisBinding, ...]  # https, on the SSTP port
    listeners: tuple[Listener, ...] | None  # on the SSTP port; None when unknown
    current_valid: bool
    renewal: StoredCertificate | None
    target: StoredCertificate | None  # the certificate a fix binds (None: no valid candidate)

    @property
    def sstp_identity_known(self) -> bool:
        return bool(self.sstp_thumbprints)

    def is_sstp_certificate(self, thumbprint: str | None) -> bool:
        return thumbprint is not None and normalise_hex(thumbprint) in self.sstp_thumbprints

    def ip_binding(self, host: str) -> SslBinding | None:
        for binding in self.ip_bindings:
            if binding.host == host:
                return binding
        return None

    def certificate(self, thumbprint: str | None) -> StoredCertificate | None:
        if thumbprint is None or not self.snapshot.certificates:
            return None
        wanted = normalise_hex(thumbprint)
        for cert in self.snapshot.certificates:
            if cert.thumbprint == wanted:
                return cert
        return None

    @property
    def remote_access(self) -> ServiceState | None:
        return self.snapshot.service("RemoteAccess")

    @property
    def vpn_users(self) -> int | None:
        return self.snapshot.vpn_connections


def is_valid_candidate(cert: StoredCertificate, public_name: str | None, now: datetime) -> bool:
    """Private key, Server Authentication (or All Purpose), inside its validity, and the public name."""
    info = cert.info
    return (
        info is not None
        and cert.has_private_key
        and info.usable_for_sstp
        and info.is_time_valid(now)
        and (public_name is None or info.matches(public_name))
    )


def _covers(candidate: CertificateInfo, names: Iterable[str]) -> bool:
    return all(candidate.matches(name) for name in names)


def _best(certs: Iterable[StoredCertificate]) -> StoredCertificate | None:
    def rank(cert: StoredCertificate) -> tuple[Any, ...]:
        info = cert.info
        assert info is not None
        return (info.not_after, not info.weak_reasons, info.has_revocation_url, cert.thumbprint)

    ranked = sorted(certs, key=rank)
    return ranked[-1] if ranked else None


def analyse(snapshot: Snapshot, server: ServerConfig, now: datetime) -> Analysis:
    """Compute the shared facts (see `Analysis`)."""
    now = as_utc(now)
    sstp = snapshot.sstp
    port = snapshot.port
    https = sstp.https if sstp is not None else True
    public_name = (server.public_name or "").strip() or None
    certificates = snapshot.certificates or ()

    # "SSTP certificate" (DESIGN 4): SHA-256 = sstp.sha256_hash, else thumbprint = sha1_hash or
    # Get-RemoteAccess's thumbprint.
    sstp_certificate: StoredCertificate | None = None
    thumbprints: set[str] = set()
    if sstp is not None:
        alternatives = [h for h in (sstp.sha1_hash, sstp.remote_access.thumbprint if sstp.remote_access else None) if h]
        if sstp.sha256_hash:
            # SSTP's crypto binding uses SHA256CertificateHash (DOMAIN 1.1): when it is set, it alone
            # decides which certificate SSTP uses; a stale SHA-1 value must not hide a missing one.
            sstp_certificate = next((c for c in certificates if c.sha256 == sstp.sha256_hash), None)
        elif https:
            for wanted in alternatives:
                sstp_certificate = next((c for c in certificates if c.thumbprint == wanted), None)
                if sstp_certificate is not None:
                    break
        # Without the certificate in the store, the configured SHA-1 values still identify it
        # (HTTP.sys bindings carry SHA-1 hashes).
        if sstp_certificate is None and https:
            thumbprints.update(alternatives)
    if sstp_certificate is not None:
        thumbprints.add(sstp_certificate.thumbprint)

    http_sys = snapshot.http_sys
    ip_bindings = tuple(b for b in (http_sys.ip_bindings or ()) if b.port == port) if http_sys else ()
    sni_bindings = tuple(b for b in (http_sys.sni_bindings or ()) if b.port == port) if http_sys else ()
    url_conflicts = (
        tuple(
            r for r in (http_sys.url_reservations or ()) if r.port == port and not SSTP_URL_RE.search(r.url.split("?")[0])
        )
        if http_sys
        else ()
    )
    iis_bindings = (
        tuple(b for b in (snapshot.iis.https_bindings or ()) if b.port == port) if snapshot.iis is not None else ()
    )
    listeners = tuple(lst for lst in snapshot.listeners if lst.port == port) if snapshot.listeners is not None else None

    current_valid = sstp_certificate is not None and is_valid_candidate(sstp_certificate, public_name, now)
    candidates = [c for c in certificates if is_valid_candidate(c, public_name, now)]
    current_names: tuple[str, ...] = ()
    if sstp_certificate is not None and sstp_certificate.info is not None:
        current_names = sstp_certificate.info.names
    renewal: StoredCertificate | None = None
    target: StoredCertificate | None = None
    if https:
        if sstp_certificate is not None and sstp_certificate.info is not None:
            # A renewal: a valid candidate for the same names that lasts longer than the certificate
            # SSTP uses, whether or not that one is still valid (DOMAIN 6, renewal pitfall).
            current_info = sstp_certificate.info
            newer = [
                c
                for c in candidates
                if c.thumbprint != sstp_certificate.thumbprint
                and c.info is not None
                and c.info.not_after > current_info.not_after
                and _covers(c.info, current_names)
            ]
            renewal = _best(newer)
        if current_valid and sstp_certificate is not None:
            target = renewal or sstp_certificate
        else:
            pool = candidates
            if public_name is None and current_names:
                # No public name configured: a replacement must carry the names of the certificate it
                # replaces, or the bot would be guessing which certificate is meant for VPN clients.
                pool = [c for c in candidates if c.info is not None and _covers(c.info, current_names)]
            target = _best(pool)

    return Analysis(
        snapshot=snapshot,
        server=server,
        now=now,
        port=port,
        https=https,
        public_name=public_name,
        sstp_certificate=sstp_certificate,
        sstp_thumbprints=frozenset(thumbprints),
        ip_bindings=ip_bindings,
        sni_bindings=sni_bindings,
        url_conflicts=url_conflicts,
        iis_bindings=iis_bindings,
        listeners=listeners,
        current_valid=current_valid,
        renewal=renewal,
        target=target,
    )


# ---------------------------------------------------------------------------------------------------
# Evidence helpers


def certificate_evidence(cert: StoredCertificate | None) -> dict[str, Any] | None:
    """A short, admin-readable description of a certificate for evidence and plan descriptions."""
    if cert is None:
        return None
    out: dict[str, Any] = {"thumbprint": cert.thumbprint, "has_private_key": cert.has_private_key}
    if cert.friendly_name:
        out["friendly_name"] = cert.friendly_name
    info = cert.info
    if info is not None:
        out.update(
            subject=info.subject,
            names=list(info.names),
            issuer=info.issuer,
            not_before=format_time(info.not_before),
            not_after=format_time(info.not_after),
        )
    return out


def _binding_evidence(a: Analysis, binding: SslBinding) -> dict[str, Any]:
    return {
        "endpoint": binding.endpoint,
        "cert_hash": binding.cert_hash,
        "app_id": binding.app_id,
        "owner": app_id_owner(binding.app_id),
        "certificate": certificate_evidence(a.certificate(binding.cert_hash)),
    }


def _sstp_evidence(a: Analysis) -> dict[str, Any]:
    sstp = a.snapshot.sstp
    return {
        "sstp_sha256_hash": sstp.sha256_hash if sstp else None,
        "sstp_thumbprint": a.sstp_certificate.thumbprint if a.sstp_certificate else (sstp.sha1_hash if sstp else None),
    }


def describe_certificate(cert: StoredCertificate | None, thumbprint: str | None = None) -> str:
    if cert is not None and cert.info is not None:
        name = cert.info.common_name or (cert.info.dns_names[0] if cert.info.dns_names else cert.info.subject)
        return f"{name} ({cert.thumbprint}, expires {cert.info.not_after:%Y-%m-%d})"
    if cert is not None:
        return cert.thumbprint
    return thumbprint or "no certificate"


# ---------------------------------------------------------------------------------------------------
# Rules


class _Findings:
    def __init__(self) -> None:
        self.items: list[Finding] = []

    def add(self, id: str, severity: Severity, title: str, detail: str, **evidence: Any) -> None:
        self.items.append(Finding(id=id, severity=severity, title=title, detail=detail, evidence=evidence))


def _rule_bindings(a: Analysis, out: _Findings) -> None:
    sstp_desc = describe_certificate(a.sstp_certificate, next(iter(sorted(a.sstp_thumbprints)), None))
    if a.https and a.snapshot.http_sys is not None and a.snapshot.http_sys.ip_bindings is not None:
        # SSTP_HASH_MISMATCH: the certificate HTTP.sys presents is not the one SSTP checks.
        if a.sstp_identity_known:
            # DESIGN 4: only the wildcard endpoints count here; a wrong specific IP:port binding under
            # SSTP's AppId is SSTP_IP_BINDING_MISMATCH (under another AppId, HTTPSYS_FOREIGN_BINDING).
            wrong = [b for b in a.ip_bindings if b.host in WILDCARD_HOSTS and not a.is_sstp_certificate(b.cert_hash)]
            if wrong:
                endpoints = ", ".join(b.endpoint for b in wrong)
                owners = {app_id_owner(b.app_id) for b in wrong}
                out.add(
                    "SSTP_HASH_MISMATCH",
                    "critical",
                    f"HTTP.sys presents a different certificate on {endpoints} than SSTP is configured with",
                    "SSTP validates the client's crypto binding against the certificate configured in RRAS "
                    f"(SHA256CertificateHash: {sstp_desc}), but HTTP.sys sends the certificate bound on "
                    f"{endpoints} in the TLS handshake (owner: {', '.join(sorted(owners))}). Clients fail with "
                    "the SSTP certificate binding error. RRAS only creates its HTTP.sys binding where none "
                    "exists, so it never corrects this by itself: the wrong binding must be deleted and the "
                    "certificate bound again in RRAS.",
                    port=a.port,
                    **_sstp_evidence(a),
                    bindings=[_binding_evidence(a, b) for b in wrong],
                )
            # SSTP_IP_BINDING_MISMATCH (our addition): a specific IP:port binding beats the wildcard
            # for that address (DOMAIN 11), so SSTP clients dialling it get this certificate.
            for b in a.ip_bindings:
                if b.host in WILDCARD_HOSTS or not is_sstp_app_id(b.app_id) or a.is_sstp_certificate(b.cert_hash):
                    continue
                out.add(
                    "SSTP_IP_BINDING_MISMATCH",
                    "critical",
                    f"HTTP.sys presents a different certificate on {b.endpoint} than SSTP is configured with",
                    f"An HTTP.sys binding for the single address {b.endpoint}, under SSTP's AppId, carries "
                    f"{describe_certificate(a.certificate(b.cert_hash), b.cert_hash)} instead of the SSTP "
                    f"certificate ({sstp_desc}). A specific IP:port binding takes precedence over the "
                    "0.0.0.0 and [::] ones, so SSTP clients connecting to that address fail with the "
                    "certificate binding error. Deleting it lets the wildcard binding serve the address.",
                    **_binding_evidence(a, b),
                    **_sstp_evidence(a),
                )
        # HTTPSYS_BINDING_MISSING
        missing = [f"{host}:{a.port}" for host in WILDCARD_HOSTS if a.ip_binding(host) is None]
        if missing:
            out.add(
                "HTTPSYS_BINDING_MISSING",
                "critical",
                f"No HTTP.sys certificate binding on {', '.join(missing)}",
                "SSTP needs HTTP.sys SSL bindings on both 0.0.0.0 and [::] for its port; without them "
                "HTTP.sys cannot complete the TLS handshake for SSTP clients (RasSstp events 12/13/21). "
                "Binding the certificate in RRAS and restarting Remote Access recreates them.",
                port=a.port,
                missing_endpoints=missing,
                present_endpoints=[b.endpoint for b in a.ip_bindings],
                **_sstp_evidence(a),
            )

    # HTTPSYS_FOREIGN_BINDING: an IP binding on the SSTP port owned by someone else.
    for b in a.ip_bindings:
        if is_sstp_app_id(b.app_id):
            continue
        owner = app_id_owner(b.app_id)
        same = a.is_sstp_certificate(b.cert_hash)
        if same:
            out.add(
                "HTTPSYS_FOREIGN_BINDING",
                "info",
                f"{owner} owns the HTTP.sys binding on {b.endpoint} (same certificate as SSTP)",
                f"The binding on {b.endpoint} carries the SSTP certificate but belongs to {owner}, not to "
                "SSTP. It works today; when the certificate is renewed in one place only, the other "
                "breaks and SSTP clients get the certificate binding error.",
                **_binding_evidence(a, b),
                **_sstp_evidence(a),
            )
        else:
            out.add(
                "HTTPSYS_FOREIGN_BINDING",
                "critical",
                f"{owner} owns the HTTP.sys binding on {b.endpoint} with a different certificate",
                f"{owner} has bound {describe_certificate(a.certificate(b.cert_hash), b.cert_hash)} on {b.endpoint}. "
                "Only one certificate can be bound per IP:port, and RRAS does not replace an existing "
                "binding, so SSTP clients connecting there receive the wrong certificate.",
                **_binding_evidence(a, b),
                **_sstp_evidence(a),
            )

    # HTTPSYS_SNI_BINDING
    for b in a.sni_bindings:
        out.add(
            "HTTPSYS_SNI_BINDING",
            "warning",
            f"SNI binding {b.endpoint} overrides SSTP's binding for clients that send SNI",
            "HTTP.sys looks up hostname:port (SNI) bindings before IP bindings, so clients that ask for "
            f"{b.host} get this binding's certificate instead of SSTP's.",
            **_binding_evidence(a, b),
            **_sstp_evidence(a),
        )

    # URLACL_CONFLICT
    for r in a.url_conflicts:
        out.add(
            "URLACL_CONFLICT",
            "critical",
            f"URL reservation {r.url} conflicts with SSTP on port {a.port}",
            "Another URL reservation on the SSTP port lets another application claim it; SSTP then "
            "cannot secure its own URL (RasSstp event 9). SSTP's own reservation is "
            f"https://+:{a.port}/sra_{{BA195980-CD49-458B-9E23-C84EE0ADCD75}}/.",
            url=r.url,
            sddl=r.sddl,
            port=a.port,
        )

    # IIS_HTTPS_BINDING
    for ib in a.iis_bindings:
        cert_hash = iis_binding_certificate(a, ib)
        same = a.is_sstp_certificate(cert_hash)
        evidence: dict[str, Any] = {
            "site": ib.site,
            "binding_information": ib.binding_information,
            "cert_hash": cert_hash,
            "certificate": certificate_evidence(a.certificate(cert_hash)),
            **_sstp_evidence(a),
        }
        if same:
            out.add(
                "IIS_HTTPS_BINDING",
                "info",
                f"IIS site '{ib.site}' has an https binding {ib.binding_information} on the SSTP port (same certificate)",
                "IIS and SSTP share port and certificate. This works today, but IIS pushes its own binding "
                "into HTTP.sys: renewing the certificate in IIS or in RRAS only breaks the other one.",
                **evidence,
            )
        else:
            out.add(
                "IIS_HTTPS_BINDING",
                "critical",
                f"IIS site '{ib.site}' binds {describe_certificate(a.certificate(cert_hash), cert_hash)} on the SSTP port",
                f"IIS has an https binding ({ib.binding_information}) on port {a.port} with a certificate "
                "that is not the SSTP certificate. IIS writes it into HTTP.sys, replacing the binding SSTP "
                "relies on, which causes the certificate binding error. The fix is to remove the binding "
                "in IIS, restart IIS and assign the certificate in RRAS, not in IIS.",
                **evidence,
            )


def iis_binding_certificate(a: Analysis, binding: IisBinding) -> str | None:
    """The thumbprint of an IIS https binding; from HTTP.sys when the probe could not read it from IIS.

    IIS keeps the certificate of an https binding in HTTP.sys, not in applicationHost.config
    (DOMAIN 4), so the binding for the same endpoint tells which certificate IIS serves.
    """
    if binding.cert_hash:
        return binding.cert_hash
    host_header = binding.host_header
    if host_header:
        for sni in a.sni_bindings:
            if sni.host.lower() == host_header.lower():
                return sni.cert_hash
    ip = binding.ip
    hosts = WILDCARD_HOSTS if ip in ("*", "") else (ip,)
    for host in hosts:
        found = a.ip_binding(host)
        if found is not None:
            return found.cert_hash
    return None


def _rule_certificate(a: Analysis, out: _Findings) -> None:
    sstp = a.snapshot.sstp
    warn_days = a.server.cert_expiry_warning_days
    if a.https and sstp is not None and a.snapshot.certificates is not None and a.sstp_certificate is None:
        configured = sstp.sha256_hash or sstp.sha1_hash or (sstp.remote_access.thumbprint if sstp.remote_access else None)
        out.add(
            "SSTP_CERT_NOT_FOUND",
            "critical",
            "The certificate SSTP is configured with is not in LocalMachine\\My"
            if configured
            else "No SSTP certificate is configured",
            "RRAS stores the SSTP certificate by hash, not by name. After a renewal or a deletion the hash "
            "matches nothing in the store and SSTP cannot complete TLS until a certificate is bound again "
            "in RRAS and Remote Access restarted.",
            sstp_sha256_hash=sstp.sha256_hash,
            sstp_sha1_hash=sstp.sha1_hash,
            remote_access_thumbprint=sstp.remote_access.thumbprint if sstp.remote_access else None,
            store_thumbprints=[c.thumbprint for c in a.snapshot.certificates],
            candidate=certificate_evidence(a.target),
        )

    cert = a.sstp_certificate
    if cert is None:
        return
    base = {"certificate": certificate_evidence(cert), "candidate": certificate_evidence(a.target if a.target is not cert else None)}
    info = cert.info
    if not cert.has_private_key:
        out.add(
            "SSTP_CERT_NO_PRIVATE_KEY",
            "critical",
            f"The SSTP certificate {cert.thumbprint} has no private key",
            "HTTP.sys and Schannel need the private key of the certificate to complete TLS (Schannel "
            "event 36870). Import the certificate with its key (PFX) or bind a certificate that has one.",
            **base,
        )
    if info is None:
        return
    if a.now >= info.not_after or a.now < info.not_before:
        expired = a.now >= info.not_after
        out.add(
            "SSTP_CERT_EXPIRED",
            "critical",
            f"The SSTP certificate {'expired on' if expired else 'is not valid before'} "
            f"{(info.not_after if expired else info.not_before):%Y-%m-%d}",
            "Clients refuse an expired or not yet valid certificate (0x800B0101 CERT_E_EXPIRED, RasClient "
            "event 20227). A valid certificate must be bound in RRAS.",
            not_before=format_time(info.not_before),
            not_after=format_time(info.not_after),
            **base,
        )
    elif info.not_after - a.now <= timedelta(days=warn_days):
        days_left = (info.not_after - a.now).days
        out.add(
            "SSTP_CERT_EXPIRING",
            "warning",
            f"The SSTP certificate expires in {days_left} day(s), on {info.not_after:%Y-%m-%d}",
            f"Renew it before {info.not_after:%Y-%m-%d}; after renewal the new certificate must also be bound "
            "in RRAS (the binding points at a hash, not a name) and Remote Access restarted.",
            not_after=format_time(info.not_after),
            days_left=days_left,
            warning_days=warn_days,
            **base,
        )
    if a.renewal is not None and a.renewal.info is not None:
        out.add(
            "SSTP_CERT_RENEWAL_NOT_BOUND",
            "warning",
            f"A renewed certificate (expires {a.renewal.info.not_after:%Y-%m-%d}) is in the store but SSTP uses the old one",
            "The store holds a newer valid certificate for the same names, but RRAS still points at the "
            "old certificate's hash. SSTP keeps using the old one until the new one is bound in RRAS.",
            certificate=certificate_evidence(cert),
            renewal=certificate_evidence(a.renewal),
        )
    if not info.usable_for_sstp:
        out.add(
            "SSTP_CERT_EKU",
            "critical",
            "The SSTP certificate lacks the Server Authentication EKU",
            "SSTP needs a certificate with Extended Key Usage Server Authentication (1.3.6.1.5.5.7.3.1) "
            "or All Purpose."
            + (" This certificate has no EKU extension." if info.ekus is None else ""),
            ekus=list(info.ekus) if info.ekus is not None else None,
            **base,
        )
    if a.public_name is not None and not info.matches(a.public_name):
        out.add(
            "SSTP_CERT_NAME_MISMATCH",
            "critical",
            f"The SSTP certificate does not cover {a.public_name}",
            f"Clients dial {a.public_name}, but the certificate's subject CN and SAN names "
            f"({', '.join(info.names) or 'none'}) do not match it, so clients reject the certificate.",
            public_name=a.public_name,
            names=list(info.names),
            **base,
        )
    if info.weak_reasons:
        out.add(
            "SSTP_CERT_WEAK",
            "warning",
            f"The SSTP certificate is weak: {', '.join(info.weak_reasons)}",
            "Use an RSA key of at least 2048 bits (or ECDSA) and a SHA-256 or stronger signature.",
            key_type=info.key_type,
            key_size=info.key_size,
            signature_hash=info.signature_hash,
            **base,
        )
    if not info.has_revocation_url:
        out.add(
            "SSTP_CERT_NO_REVOCATION_URL",
            "warning",
            "The SSTP certificate has no CRL distribution point and no OCSP URL",
            "Windows VPN clients check revocation; without a reachable CRL or OCSP responder they fail "
            "with 0x80092013 (CRYPT_E_REVOCATION_OFFLINE). Issue the certificate from a CA that publishes "
            "its CRL on the Internet.",
            **base,
        )


def _rule_offload(a: Analysis, out: _Findings) -> None:
    sstp = a.snapshot.sstp
    if sstp is None or a.https:
        return
    expected = normalise_hex(a.server.offload_sha256) if a.server.offload_sha256 else None
    if sstp.sha256_hash is None or (expected is not None and sstp.sha256_hash != expected):
        out.add(
            "SSTP_OFFLOAD_HASH",
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


def _rule_service(a: Analysis, out: _Findings) -> None:
    snap = a.snapshot
    remote_access = a.remote_access
    if snap.services is not None and (remote_access is None or not remote_access.running):
        out.add(
            "REMOTEACCESS_STOPPED",
            "critical",
            "The Remote Access service is not running"
            if remote_access is not None
            else "The Remote Access service was not found",
            "SSTP is served by the Routing and Remote Access service (RemoteAccess); while it is not "
            "running no VPN client can connect.",
            status=remote_access.status if remote_access else None,
            start_type=remote_access.start_type if remote_access else None,
        )
    if a.listeners is None:
        return
    foreign = [lst for lst in a.listeners if lst.pid is not None and lst.pid != HTTP_SYS_PID]
    if foreign:
        holders = sorted({f"{lst.process or 'unknown process'} (PID {lst.pid})" for lst in foreign})
        out.add(
            "PORT_OWNED_BY_OTHER_PROCESS",
            "critical",
            f"Port {a.port} is held by {', '.join(holders)}",
            f"Everything served by HTTP.sys listens as PID 4 (System). Another program holds port {a.port}, "
            "so SSTP cannot listen there. Stop or reconfigure that program; the bot will not touch it.",
            port=a.port,
            listeners=[
                {"local_address": lst.local_address, "port": lst.port, "pid": lst.pid, "process": lst.process}
                for lst in foreign
            ],
        )
    elif remote_access is not None and remote_access.running and not a.listeners:
        out.add(
            "SSTP_NOT_LISTENING",
            "critical",
            f"Remote Access is running but nothing listens on port {a.port}",
            "After a healthy start SSTP listens on its port through HTTP.sys (PID 4). Nothing does, so "
            "SSTP failed to start its listener (see the RasSstp events); restarting Remote Access usually "
            "recovers it.",
            port=a.port,
        )


def _rule_events(a: Analysis, out: _Findings) -> None:
    """SSTP_ERROR_EVENTS: relevant events of the 24 hours before the probe that belong to the current run.

    When the probe reports when Remote Access started (`services.RemoteAccess.started_at`), events
    logged before that belong to the previous run (DOMAIN 9: "no new RasSstp 8/9/13/18/21 since the
    restart") and are ignored, so a fix that restarts Remote Access is judged by what happened after it.
    Without `started_at` every event of the window counts.
    """
    events = a.snapshot.events
    if not events:
        return
    remote_access = a.remote_access
    started_at = remote_access.started_at if remote_access is not None else None
    # The window ends when the probe ran, on the server's own clock (the clock the event times come
    # from): a saved snapshot analysed later, or a bot whose clock drifts from the server's, judges the
    # same events the same way.
    window_start = (a.snapshot.collected_at or a.now) - EVENT_WINDOW
    relevant = []
    ignored = 0
    for event in events:
        provider = event.provider.lower()
        if (
            ("rassstp" in provider and event.id in SSTP_EVENT_IDS)
            or ("schannel" in provider and event.id in SCHANNEL_EVENT_IDS)
        ) and event.time >= window_start:
            if started_at is not None and event.time < started_at:
                ignored += 1
            else:
                relevant.append(event)
    if relevant:
        relevant.sort(key=lambda e: e.time, reverse=True)
        ids = sorted({e.id for e in relevant})
        since = "in the last 24 hours"
        detail = (
            "RasSstp 8 (HTTP layer), 9 (URL reservation), 12/13 (certificate for IPv4/IPv6), 18 (bad "
            "SHA256CertificateHash), 21 (certificate hash) and Schannel 36870 (private key) show SSTP "
            "failing to serve clients."
        )
        extra: dict[str, Any] = {}
        if started_at is not None:
            if started_at > window_start:
                since = f"since Remote Access started at {format_time(started_at)}"
            if ignored:
                detail += (
                    f" {ignored} older event(s), logged before Remote Access started at {format_time(started_at)}, "
                    "belong to its previous run and were ignored."
                )
            extra = {"remoteaccess_started_at": format_time(started_at), "ignored_before_start": ignored}
        out.add(
            "SSTP_ERROR_EVENTS",
            "warning",
            f"{len(relevant)} SSTP/Schannel error event(s) {since} (IDs {', '.join(map(str, ids))})",
            detail,
            events=[
                {"provider": e.provider, "id": e.id, "time": format_time(e.time), "message": (e.message or "")[:300]}
                for e in relevant[:10]
            ],
            count=len(relevant),
            **extra,
        )


def _rule_session(a: Analysis, out: _Findings) -> None:
    snap = a.snapshot
    if snap.host.is_admin is False:
        out.add(
            "NOT_ELEVATED",
            "critical",
            "The remote session is not elevated: fixes cannot run",
            "netsh http, iisreset, Set-RemoteAccess and service restarts need administrator rights. "
            "Over WinRM a local account is UAC-filtered unless LocalAccountTokenFilterPolicy=1; use a "
            "domain account in the local Administrators group. Some readings may be incomplete.",
            computer_name=snap.host.computer_name,
        )
    if snap.probe_errors:
        out.add(
            "PROBE_INCOMPLETE",
            "warning",
            f"The probe could not read {len(snap.probe_errors)} section(s): "
            f"{', '.join(sorted({e.section for e in snap.probe_errors}))}",
            "Some findings may be missing because parts of the server's state could not be read.",
            probe_errors=[{"section": e.section, "message": e.message} for e in snap.probe_errors],
        )
    unreadable = [c for c in (snap.certificates or ()) if c.info is None]
    if unreadable:
        sstp_affected = any(a.is_sstp_certificate(c.thumbprint) for c in unreadable)
        out.add(
            "CERTIFICATE_UNREADABLE",
            "warning" if sstp_affected else "info",
            f"{len(unreadable)} certificate(s) in LocalMachine\\My could not be analysed",
            "Their DER could not be parsed, so their names, usages and validity were not checked"
            + (" (this includes the SSTP certificate)." if sstp_affected else "."),
            certificates=[{"thumbprint": c.thumbprint, "error": c.error} for c in unreadable],
        )


def raw_findings(a: Analysis) -> list[Finding]:
    """All findings for the analysis, with `fixable` still False."""
    out = _Findings()
    _rule_session(a, out)
    _rule_bindings(a, out)
    _rule_certificate(a, out)
    _rule_offload(a, out)
    _rule_service(a, out)
    _rule_events(a, out)
    return out.items


def ensure_snapshot(snapshot: Snapshot | str | bytes | Mapping[str, Any]) -> Snapshot:
    """Accept probe output as well as a parsed snapshot (raises SnapshotError when malformed)."""
    return snapshot if isinstance(snapshot, Snapshot) else parse_snapshot(snapshot)


def diagnose(snapshot: Snapshot | Mapping[str, Any] | str | bytes, server: ServerConfig, now: datetime) -> list[Finding]:
    """Every finding of DESIGN 4 for this snapshot, with `fixable` set from the remediation plan."""
    from commands.remediation import assess  # the plan builder needs `Analysis` from here

    findings, _ = assess(snapshot, server, now)
    return findings
