"""Facts: what one snapshot says, derived once, shared by every rule family and the planner. Pure.

No rule lives here: `analyse()` resolves the SSTP port and certificate, the bindings and reservations
on that port, whether SSTP listens, and which certificate a fix would bind (judged as Windows clients
judge it, DESIGN 4 [2]); the rule families of `commands.rules` turn these facts into findings and
remedies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, TypeVar

from commands.certs import CertificateInfo
from commands.model import as_utc, format_time
from commands.server import ServerConfig
from commands.snapshot import (
    HttpSys,
    IisBinding,
    Listener,
    ServiceState,
    Snapshot,
    SslBinding,
    StoredCertificate,
    UrlReservation,
    normalise_guid,
    normalise_hex,
)

SSTP_APP_ID = "{ba195980-cd49-458b-9e23-c84ee0adcd75}"
IIS_APP_ID = "{4dc3e181-e14b-4a21-b022-59fc669b0914}"
KNOWN_APP_IDS = {SSTP_APP_ID: "SSTP (RRAS)", IIS_APP_ID: "IIS", "{5d89a20c-beab-4389-9447-324788eb944a}": "AD FS"}
# SSTP registers https://+:PORT/sra_{BA195980-CD49-458B-9E23-C84EE0ADCD75}/ (DOMAIN 5, 10).
SSTP_URL_RE = re.compile(r"/sra_\{ba195980-cd49-458b-9e23-c84ee0adcd75\}/?$", re.IGNORECASE)
SSTP_URL_PATH = "/SRA_{BA195980-CD49-458B-9E23-C84EE0ADCD75}/"
HTTP_SYS_PID = 4
WILDCARD_HOSTS = ("0.0.0.0", "[::]")
T = TypeVar("T")
_URL_RE = re.compile(r"^(https?)://(\[[^\]]*\]|[^/:]*)(?::(\d{1,5}))?(/.*)?$", re.IGNORECASE)


def app_id_owner(app_id: str | None) -> str:
    """A readable owner name for an HTTP.sys AppId."""
    if not app_id:
        return "unknown"
    return KNOWN_APP_IDS.get(normalise_guid(app_id), f"another application {app_id}")


def is_sstp_app_id(app_id: str | None) -> bool:
    return bool(app_id) and normalise_guid(app_id or "") == SSTP_APP_ID


def is_root_reservation(url: str, port: int, scheme: str = "https") -> bool:
    """A reservation of the whole port (`https://+:PORT/`, `https://*:PORT/`, `https://HOST:PORT/`).

    Only those cover SSTP's URL (DESIGN 4 [2]); a reservation of another path on the port (DirectAccess
    IP-HTTPS, a WinRM listener) does not, and is never a conflict.
    """
    m = _URL_RE.match(url.strip())
    if not m or m.group(1).lower() != scheme:
        return False
    url_port = int(m.group(3)) if m.group(3) else (443 if scheme == "https" else 80)
    return url_port == port and (m.group(4) or "/") == "/"


@dataclass(frozen=True)
class Analysis:
    """Facts derived once from a snapshot, shared by the rule families and the planner."""

    snapshot: Snapshot
    server: ServerConfig
    now: datetime
    port: int
    https: bool
    public_name: str | None
    sstp_certificate: StoredCertificate | None
    sstp_thumbprints: frozenset[str]  # SHA-1 values that identify the SSTP certificate
    sstp_sha256: str | None  # the configured SHA256CertificateHash (HTTPS mode), even when not in the store
    ip_bindings: tuple[SslBinding, ...]  # on the SSTP port
    sni_bindings: tuple[SslBinding, ...]  # on the SSTP port
    url_conflicts: tuple[UrlReservation, ...]  # root reservations of the SSTP port (DESIGN 4 [2])
    iis_bindings: tuple[IisBinding, ...]  # https, on the SSTP port
    listeners: tuple[Listener, ...] | None  # on the SSTP port; None when unknown
    sstp_registered: bool | None  # SSTP's URL is registered in HTTP.sys; None when unknown
    directaccess: bool
    current_valid: bool
    renewal: StoredCertificate | None
    preferred: StoredCertificate | None  # the certificate SSTP should use (DESIGN 5), bindable or not
    target: StoredCertificate | None  # the certificate a fix binds (None: no valid candidate, or DirectAccess)

    @property
    def sstp_identity_known(self) -> bool:
        return bool(self.sstp_thumbprints) or self.sstp_sha256 is not None

    def is_sstp_certificate(self, thumbprint: str | None) -> bool:
        return thumbprint is not None and normalise_hex(thumbprint) in self.sstp_thumbprints

    def is_other_certificate(self, thumbprint: str | None) -> bool:
        """A binding with this certificate hash is known not to serve the SSTP certificate.

        HTTP.sys bindings carry SHA-1 hashes. When SSTP is configured by SHA-256 alone and that
        certificate is not in the store, no SHA-1 value identifies it: a bound certificate found in the
        store with another SHA-256 is still known to be another one; one the store lacks may be SSTP's.
        """
        if self.is_sstp_certificate(thumbprint):
            return False
        if self.sstp_thumbprints or thumbprint is None:
            return self.sstp_identity_known
        if self.sstp_sha256 is None:
            return False
        bound = self.certificate(thumbprint)
        return bound is not None and bound.sha256 is not None and bound.sha256 != self.sstp_sha256

    @property
    def held_back_by_directaccess(self) -> bool:
        """SSTP should use another certificate, but DirectAccess forbids the bot to change it (DESIGN 4 [2])."""
        preferred, current = self.preferred, self.sstp_certificate
        return (
            self.directaccess
            and preferred is not None
            and (current is None or preferred.thumbprint != current.thumbprint)
        )

    @property
    def replacement_names(self) -> tuple[str, ...] | None:
        """The names a replacement certificate must be valid for; None when unknown."""
        return replacement_names(self.sstp_certificate, self.public_name)

    def ip_binding(self, host: str) -> SslBinding | None:
        return next((b for b in self.ip_bindings if b.host == host), None)

    def certificate(self, thumbprint: str | None) -> StoredCertificate | None:
        if thumbprint is None:
            return None
        return self._certificates.get(normalise_hex(thumbprint))

    @cached_property
    def _certificates(self) -> dict[str, StoredCertificate]:
        # Looked up once per binding and finding: a dict, so a server listing thousands of bindings
        # and certificates costs linear time, not their product. The first of a thumbprint wins.
        found: dict[str, StoredCertificate] = {}
        for cert in self.snapshot.certificates or ():
            found.setdefault(cert.thumbprint, cert)
        return found

    def rank(self, item: object) -> int:
        """Where a binding, reservation or IIS binding of this analysis stands in its list (plan order
        within a phase); 0 for one that is not in them."""
        return self._ranks.get(id(item), 0)

    @cached_property
    def _ranks(self) -> dict[int, int]:
        ranks: dict[int, int] = {}
        for items in (self.ip_bindings, self.sni_bindings, self.url_conflicts, self.iis_bindings):
            for index, item in enumerate(items):
                ranks.setdefault(id(item), index)
        return ranks

    @property
    def bindings_known(self) -> bool:
        return self.snapshot.http_sys is not None and self.snapshot.http_sys.ip_bindings is not None

    @property
    def remote_access(self) -> ServiceState | None:
        return self.snapshot.service("RemoteAccess")

    @property
    def can_restart(self) -> bool:
        """Remote Access exists and is not disabled: a plan may (re)start it."""
        ra = self.remote_access
        return ra is not None and (ra.start_type or "").lower() != "disabled"

    @property
    def vpn_users(self) -> int | None:
        return self.snapshot.vpn_connections

    @property
    def replaces_certificate(self) -> bool:
        """A fix would bind another certificate than the one SSTP uses now."""
        current = self.sstp_certificate
        return self.target is not None and (current is None or current.thumbprint != self.target.thumbprint)

    @property
    def rebind_needed(self) -> bool:
        """Binding the target certificate (which restarts Remote Access) is needed: another certificate,
        a stale SHA-256 value, or a wildcard binding that is wrong or missing (DESIGN 5)."""
        target = self.target
        if target is None:
            return False
        sstp = self.snapshot.sstp
        wildcard = [b for b in self.ip_bindings if b.host in WILDCARD_HOSTS]
        return (
            self.replaces_certificate
            or (sstp is not None and sstp.sha256_hash is not None and sstp.sha256_hash != target.sha256)
            or any(b.cert_hash != target.thumbprint for b in wildcard)
            or (self.bindings_known and len({b.host for b in wildcard}) < len(WILDCARD_HOSTS))
        )


def certificate_problems(cert: StoredCertificate, public_name: str | None, now: datetime) -> tuple[str, ...]:
    """Why this certificate cannot serve SSTP clients dialling `public_name` (empty: it can).

    The one judgement used for the SSTP certificate and for every candidate a fix might bind
    (issue 8: an unusable or mismatching certificate is never chosen).
    """
    info = cert.info
    if info is None:
        return ("it cannot be parsed",)
    problems: list[str] = []
    if not cert.key_usable:
        problems.append("no usable private key")
    if not info.usable_for_sstp:
        problems.append("no Server Authentication EKU")
    if not info.is_time_valid(now):
        problems.append("outside its validity period")
    if public_name is not None and not info.matches(public_name):
        problems.append(f"does not match {public_name}")
    problems.extend(info.unusable_reasons)
    return tuple(problems)


def is_valid_candidate(cert: StoredCertificate, public_name: str | None, now: datetime) -> bool:
    """Usable private key, Server Authentication (or All Purpose), inside its validity, the public
    name, and nothing that makes Windows unable to serve it."""
    return not certificate_problems(cert, public_name, now)


def _covers(candidate: CertificateInfo, names: Iterable[str]) -> bool:
    return all(candidate.matches(name) for name in names)


def replacement_names(sstp_certificate: StoredCertificate | None, public_name: str | None) -> tuple[str, ...] | None:
    """The names another certificate must be valid for to stand in for the SSTP certificate: the public
    name; without one, the names the SSTP certificate is valid for (its `identities`: the DNS SANs when
    it has any, else the CN, plus IP SANs; a CN beside DNS SANs is often a display name such as "VPN
    Server" that no client matches, RFC 6125). None when neither is known (no public name, and the SSTP
    certificate is missing, unreadable or names nothing): then the bot cannot tell which certificate is
    meant for VPN clients.
    """
    if public_name is not None:
        return (public_name,)
    info = sstp_certificate.info if sstp_certificate is not None else None
    if info is None or not info.identities:
        return None
    return info.identities


def _best(certs: Iterable[StoredCertificate]) -> StoredCertificate | None:
    def rank(cert: StoredCertificate) -> tuple[Any, ...]:
        info = cert.info
        assert info is not None
        return (info.not_after, not info.weak_reasons, info.has_revocation_url, cert.thumbprint)

    ranked = sorted(certs, key=rank)
    return ranked[-1] if ranked else None


def _sstp_certificate(snapshot: Snapshot, https: bool) -> tuple[StoredCertificate | None, frozenset[str]]:
    """"SSTP certificate" (DESIGN 4): SHA-256 = sstp.sha256_hash, else thumbprint = sha1_hash or
    Get-RemoteAccess's thumbprint; and the SHA-1 values that identify it."""
    sstp = snapshot.sstp
    certificates = snapshot.certificates or ()
    if sstp is None:
        return None, frozenset()
    found: StoredCertificate | None = None
    alternatives = [h for h in (sstp.sha1_hash, sstp.remote_access.thumbprint if sstp.remote_access else None) if h]
    if sstp.sha256_hash:
        # SSTP's crypto binding uses SHA256CertificateHash (DOMAIN 1.1): when it is set, it alone
        # decides which certificate SSTP uses; a stale SHA-1 value must not hide a missing one.
        found = next((c for c in certificates if c.sha256 == sstp.sha256_hash), None)
    elif https:
        found = next((c for wanted in alternatives for c in certificates if c.thumbprint == wanted), None)
    thumbprints: set[str] = set()
    # Without the certificate in the store, the configured SHA-1 values still identify it (HTTP.sys
    # bindings carry SHA-1 hashes).
    if found is None and https:
        thumbprints.update(alternatives)
    if found is not None:
        thumbprints.add(found.thumbprint)
    return found, frozenset(thumbprints)


def _sstp_registered(snapshot: Snapshot, port: int, https: bool) -> bool | None:
    """DESIGN 3 [2]: SSTP listens when its URL is among HTTP.sys's registered URLs (case-insensitive)."""
    urls = snapshot.http_sys.registered_urls if snapshot.http_sys is not None else None
    if urls is None:
        return None
    wanted = f"{'HTTPS' if https else 'HTTP'}://+:{port}{SSTP_URL_PATH}"
    return any(url.upper().rstrip("/") + "/" == wanted for url in urls)


def _renewal(
    candidates: list[StoredCertificate], sstp_certificate: StoredCertificate | None
) -> StoredCertificate | None:
    """A valid candidate for the same names that lasts longer than the certificate SSTP uses, whether or
    not that one is still valid (DOMAIN 6, renewal pitfall). "The same names" are the names the SSTP
    certificate is valid for as clients match it (`CertificateInfo.identities`), not its display CN."""
    current = sstp_certificate.info if sstp_certificate is not None else None
    if sstp_certificate is None or current is None or not current.identities:
        return None
    return _best(
        c
        for c in candidates
        if c.thumbprint != sstp_certificate.thumbprint
        and c.info is not None
        and c.info.not_after > current.not_after
        and _covers(c.info, current.identities)
    )


@dataclass(frozen=True)
class _Choice:
    renewal: StoredCertificate | None  # a newer certificate for the same names (SSTP_CERT_RENEWAL_NOT_BOUND)
    preferred: StoredCertificate | None  # the certificate SSTP should use (DESIGN 5)
    target: StoredCertificate | None  # the one a fix binds


def _choose_target(
    snapshot: Snapshot,
    sstp_certificate: StoredCertificate | None,
    public_name: str | None,
    current_valid: bool,
    directaccess: bool,
    now: datetime,
) -> _Choice:
    """DESIGN 5: the current certificate if valid (its renewal when there is one), else the best valid
    candidate for the public name (without one: for the SSTP certificate's names, else none at all)."""
    candidates = [c for c in snapshot.certificates or () if is_valid_candidate(c, public_name, now)]
    renewal = _renewal(candidates, sstp_certificate)
    preferred: StoredCertificate | None
    if current_valid and sstp_certificate is not None:
        preferred = renewal or sstp_certificate
    else:
        # A replacement must carry the names clients dial, or the bot would be guessing which
        # certificate is meant for VPN clients (a web server's, an AD FS one): none when they are unknown.
        names = replacement_names(sstp_certificate, public_name)
        preferred = _best(c for c in candidates if names is not None and c.info is not None and _covers(c.info, names))
    # DirectAccess ties the certificate to its own settings (DESIGN 4 [2], DOMAIN 14): a fix may bind
    # only the certificate SSTP already uses, and only while that one is valid.
    target = (sstp_certificate if current_valid else None) if directaccess else preferred
    return _Choice(renewal, preferred, target)


@dataclass(frozen=True)
class _OnPort:
    """What the snapshot holds on the SSTP port."""

    ip_bindings: tuple[SslBinding, ...]
    sni_bindings: tuple[SslBinding, ...]
    url_conflicts: tuple[UrlReservation, ...]
    iis_bindings: tuple[IisBinding, ...]
    listeners: tuple[Listener, ...] | None


def _at_port(items: Iterable[T] | None, port: int) -> tuple[T, ...]:
    return tuple(item for item in items or () if getattr(item, "port", None) == port)


def _on_port(snapshot: Snapshot, port: int, https: bool) -> _OnPort:
    http_sys = snapshot.http_sys or HttpSys(None, None, None)
    iis = snapshot.iis.https_bindings if snapshot.iis is not None else None
    scheme = "https" if https else "http"
    conflicts = tuple(
        r
        for r in http_sys.url_reservations or ()
        if is_root_reservation(r.url, port, scheme) and not SSTP_URL_RE.search(r.url.split("?")[0])
    )
    return _OnPort(
        ip_bindings=_at_port(http_sys.ip_bindings, port),
        sni_bindings=_at_port(http_sys.sni_bindings, port),
        url_conflicts=conflicts,
        iis_bindings=_at_port(iis, port),
        listeners=None if snapshot.listeners is None else _at_port(snapshot.listeners, port),
    )


def analyse(snapshot: Snapshot, server: ServerConfig, now: datetime) -> Analysis:
    """Compute the shared facts (see `Analysis`)."""
    now = as_utc(now)
    sstp = snapshot.sstp
    port = snapshot.port
    https = sstp.https if sstp is not None else True
    public_name = (server.public_name or "").strip() or None
    sstp_certificate, thumbprints = _sstp_certificate(snapshot, https)
    on_port = _on_port(snapshot, port, https)
    current_valid = sstp_certificate is not None and is_valid_candidate(sstp_certificate, public_name, now)
    remote_access = sstp.remote_access if sstp is not None else None
    directaccess = bool(remote_access is not None and remote_access.directaccess)
    choice = _Choice(None, None, None)
    if https:
        choice = _choose_target(snapshot, sstp_certificate, public_name, current_valid, directaccess, now)
    return Analysis(
        snapshot=snapshot,
        server=server,
        now=now,
        port=port,
        https=https,
        public_name=public_name,
        sstp_certificate=sstp_certificate,
        sstp_thumbprints=thumbprints,
        sstp_sha256=sstp.sha256_hash if sstp is not None and https else None,
        ip_bindings=on_port.ip_bindings,
        sni_bindings=on_port.sni_bindings,
        url_conflicts=on_port.url_conflicts,
        iis_bindings=on_port.iis_bindings,
        listeners=on_port.listeners,
        sstp_registered=_sstp_registered(snapshot, port, https),
        directaccess=directaccess,
        current_valid=current_valid,
        renewal=choice.renewal,
        preferred=choice.preferred,
        target=choice.target,
    )


# ---------------------------------------------------------------------------------------------------
# Descriptions shared by the rule families


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


def describe_certificate(cert: StoredCertificate | None, thumbprint: str | None = None) -> str:
    if cert is not None and cert.info is not None:
        name = cert.info.common_name or (cert.info.dns_names[0] if cert.info.dns_names else cert.info.subject)
        return f"{name} ({cert.thumbprint}, expires {cert.info.not_after:%Y-%m-%d})"
    if cert is not None:
        return cert.thumbprint
    return thumbprint or "no certificate"


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
    hosts = WILDCARD_HOSTS if binding.ip in ("*", "") else (binding.ip,)
    for host in hosts:
        found = a.ip_binding(host)
        if found is not None:
            return found.cert_hash
    return None
