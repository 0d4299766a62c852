"""Remediation plans (DESIGN 5): ordered fix-script steps for the findings of one snapshot. Pure.

Order: remove IIS https bindings on the SSTP port -> restart IIS -> delete the HTTP.sys bindings in
the way -> delete SNI bindings and conflicting URL reservations -> bind the SSTP certificate (which
restarts Remote Access) -> or just restart Remote Access.

Why bindings are deleted before binding: RRAS creates its HTTP.sys bindings on 0.0.0.0:PORT and
[::]:PORT only where none exist (DOMAIN 0), so a wrong binding left in place survives the rebind.
Bindings that already carry the target certificate under SSTP's AppId are left alone.

What gets guidance instead of a plan: a non-elevated session, another program holding the port, no
valid certificate to bind, TLS offload settings, weak or non-revocable certificates without a
replacement in the store, a disabled or missing Remote Access service.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from commands.diagnosis import (
    ALL_FINDING_IDS,
    WILDCARD_HOSTS,
    Analysis,
    analyse,
    app_id_owner,
    describe_certificate,
    ensure_snapshot,
    iis_binding_certificate,
    is_sstp_app_id,
    raw_findings,
)
from commands.errors import UsageError
from commands.model import Finding, Plan, Step
from commands.scripts import validate_params
from commands.server import ServerConfig
from commands.snapshot import Snapshot, StoredCertificate

# Findings no plan ever fixes: symptoms, or situations a person must resolve first (guidance only).
GUIDANCE_ONLY_IDS = frozenset(
    {
        "SSTP_OFFLOAD_HASH",
        "PORT_OWNED_BY_OTHER_PROCESS",
        "SSTP_ERROR_EVENTS",
        "NOT_ELEVATED",
        "PROBE_INCOMPLETE",
        "CERTIFICATE_UNREADABLE",
    }
)
# Findings a plan can fix (given the right circumstances).
FIXABLE_IDS = frozenset(ALL_FINDING_IDS) - GUIDANCE_ONLY_IDS
_CERTIFICATE_IDS = frozenset(
    {
        "SSTP_CERT_NOT_FOUND",
        "SSTP_CERT_EXPIRED",
        "SSTP_CERT_NO_PRIVATE_KEY",
        "SSTP_CERT_EKU",
        "SSTP_CERT_NAME_MISMATCH",
        "SSTP_CERT_RENEWAL_NOT_BOUND",
    }
)
_BINDING_IDS = frozenset(
    {"SSTP_HASH_MISMATCH", "SSTP_IP_BINDING_MISMATCH", "IIS_HTTPS_BINDING", "HTTPSYS_FOREIGN_BINDING",
     "HTTPSYS_BINDING_MISSING"}
)


def _users(a: Analysis) -> str:
    n = a.vpn_users
    if n is None:
        return "Disconnects every connected VPN user."
    if n == 0:
        return "No VPN users are connected right now."
    return f"Disconnects the {n} connected VPN user{'s' if n != 1 else ''}."


def _step(action: str, params: dict[str, Any], description: str, disruptive: bool = False) -> Step:
    return Step(action=action, params=validate_params(action, params), description=description, disruptive=disruptive)


def build_steps(a: Analysis, findings: Sequence[Finding]) -> tuple[list[Step], set[int], dict[int, str]]:
    """The plan's steps, the indices of the findings they fix, and guidance for the rest.

    When no critical or warning finding would be fixed the step list is empty (no plan).
    """
    guidance: dict[int, str] = {}

    def guide(ids: frozenset[str] | set[str], text: str, fixed: set[int] | None = None) -> None:
        for i, f in enumerate(findings):
            if f.id in ids and f.severity != "info" and i not in guidance and (fixed is None or i not in fixed):
                guidance[i] = text

    ids_present = {f.id for f in findings}
    if a.snapshot.host.is_admin is False:
        guide(FIXABLE_IDS, "No automatic fix: the remote session is not elevated (see NOT_ELEVATED).")
        return [], set(), guidance
    if "PORT_OWNED_BY_OTHER_PROCESS" in ids_present:
        guide(
            FIXABLE_IDS,
            f"No automatic fix while another program holds port {a.port} (see PORT_OWNED_BY_OTHER_PROCESS).",
        )
        return [], set(), guidance

    remote_access = a.remote_access
    can_restart = remote_access is not None and (remote_access.start_type or "").lower() != "disabled"
    target = a.target if a.https else None
    current = a.sstp_certificate
    steps: list[Step] = []
    removed_iis: set[tuple[str, str]] = set()
    deleted_endpoints: set[str] = set()
    deleted_urls: set[str] = set()
    skipped: dict[str, str] = {}

    def add(action: str, params: dict[str, Any], description: str, disruptive: bool = False) -> bool:
        try:
            steps.append(_step(action, params, description, disruptive))
        except UsageError as exc:
            skipped[json.dumps(params, sort_keys=True)] = str(exc)
            return False
        return True

    bind = False
    if target is not None and can_restart:
        t = target.thumbprint
        sstp = a.snapshot.sstp
        bindings_known = a.snapshot.http_sys is not None and a.snapshot.http_sys.ip_bindings is not None
        wildcard = [b for b in a.ip_bindings if b.host in WILDCARD_HOSTS]
        # Rebinding restarts Remote Access (drops every VPN user): only when something needs it.
        need_bind = (
            current is None
            or current.thumbprint != t
            or (sstp is not None and sstp.sha256_hash is not None and sstp.sha256_hash != target.sha256)
            or any(b.cert_hash != t for b in wildcard)
            or (bindings_known and len({b.host for b in wildcard}) < len(WILDCARD_HOSTS))
        )
        # 1. IIS https bindings on the SSTP port that do not carry the target certificate.
        for ib in a.iis_bindings:
            cert_hash = iis_binding_certificate(a, ib)
            if cert_hash == t:
                continue
            if add(
                "remove_iis_binding",
                {"Site": ib.site, "BindingInformation": ib.binding_information},
                f"Remove the https binding {ib.binding_information} from IIS site '{ib.site}' "
                f"(it serves {describe_certificate(a.certificate(cert_hash), cert_hash)} on the SSTP port).",
            ):
                removed_iis.add((ib.site, ib.binding_information))
        if removed_iis:
            add(
                "restart_iis",
                {},
                "Restart IIS (iisreset) so it lets go of the removed binding. Web sites on this server are "
                "unavailable for a few seconds; VPN users are not affected.",
            )
        # 2. HTTP.sys IP bindings: wrong certificate (whoever owns it), or a foreign owner when the
        #    certificate is bound again anyway (RRAS then recreates them under its own AppId).
        for b in a.ip_bindings:
            wrong_cert = b.cert_hash != t
            if (wrong_cert or (need_bind and not is_sstp_app_id(b.app_id))) and add(
                "delete_httpsys_binding",
                {"Endpoint": b.endpoint},
                f"Delete the HTTP.sys certificate binding on {b.endpoint} (owner: {app_id_owner(b.app_id)}, "
                f"certificate {describe_certificate(a.certificate(b.cert_hash), b.cert_hash)}).",
            ):
                deleted_endpoints.add(b.endpoint)
        bind = need_bind
    # 3. SNI bindings on the SSTP port (they override SSTP's binding for SNI clients).
    for b in a.sni_bindings:
        if add(
            "delete_httpsys_binding",
            {"Endpoint": b.endpoint},
            f"Delete the SNI binding {b.endpoint} (owner: {app_id_owner(b.app_id)}, certificate "
            f"{describe_certificate(a.certificate(b.cert_hash), b.cert_hash)}), which overrides SSTP's binding.",
        ):
            deleted_endpoints.add(b.endpoint)
    # 4. URL reservations on the SSTP port other than SSTP's own.
    for r in a.url_conflicts:
        if add("delete_url_reservation", {"Url": r.url}, f"Delete the URL reservation {r.url}, which conflicts with SSTP."):
            deleted_urls.add(r.url)
    # 5. Bind, or restart.
    restarted = False
    if bind and target is not None:
        same = current is not None and current.thumbprint == target.thumbprint
        what = "Bind again" if same else "Bind"
        restarted = add(
            "bind_sstp_certificate",
            {"Thumbprint": target.thumbprint},
            f"{what} {describe_certificate(target)} as the SSTP certificate in RRAS (Set-RemoteAccess -SslCertificate) and "
            f"restart Remote Access; RRAS then creates its HTTP.sys bindings on 0.0.0.0:{a.port} and "
            f"[::]:{a.port}. {_users(a)}",
            disruptive=True,
        )
        bind = restarted
    if not restarted and can_restart and (
        {"REMOTEACCESS_STOPPED", "SSTP_NOT_LISTENING"} & ids_present or deleted_urls
    ):
        stopped = remote_access is not None and not remote_access.running
        restarted = add(
            "restart_remoteaccess",
            {},
            f"{'Start' if stopped else 'Restart'} the Remote Access service and wait until SSTP listens on port "
            f"{a.port}. {_users(a)}",
            disruptive=True,
        )

    # Which findings do these steps fix?
    fixed: set[int] = set()
    warn_days = a.server.cert_expiry_warning_days
    replaced = bind and target is not None and (current is None or current.thumbprint != target.thumbprint)
    target_info = target.info if target is not None else None
    for i, f in enumerate(findings):
        ev = f.evidence
        ok = False
        if f.id == "IIS_HTTPS_BINDING":
            ok = (ev.get("site"), ev.get("binding_information")) in removed_iis
        elif f.id in ("HTTPSYS_FOREIGN_BINDING", "HTTPSYS_SNI_BINDING", "SSTP_IP_BINDING_MISMATCH"):
            ok = ev.get("endpoint") in deleted_endpoints
        elif f.id == "URLACL_CONFLICT":
            ok = ev.get("url") in deleted_urls
        elif f.id == "SSTP_HASH_MISMATCH":
            # The wrong wildcard bindings are deleted and the certificate bound again (RRAS recreates
            # them), or they already carry the certificate the plan binds: after it, SSTP's hash and
            # the bindings name the same certificate.
            ok = bind and all(
                str(b.get("endpoint", "")) in deleted_endpoints or _is_target(a, target, b.get("cert_hash"))
                for b in ev.get("bindings", ())
            )
        elif f.id == "HTTPSYS_BINDING_MISSING":
            ok = bind
        elif f.id in _CERTIFICATE_IDS:
            ok = replaced
        elif f.id == "SSTP_CERT_EXPIRING":
            ok = replaced and target_info is not None and target_info.not_after - a.now > timedelta(days=warn_days)
        elif f.id == "SSTP_CERT_WEAK":
            ok = replaced and target_info is not None and not target_info.weak_reasons
        elif f.id == "SSTP_CERT_NO_REVOCATION_URL":
            ok = replaced and target_info is not None and target_info.has_revocation_url
        elif f.id in ("REMOTEACCESS_STOPPED", "SSTP_NOT_LISTENING"):
            ok = restarted
        if ok:
            fixed.add(i)

    if not any(findings[i].severity in ("critical", "warning") for i in fixed):
        steps, fixed = [], set()

    # Guidance for what stays unfixed.
    if skipped:
        guide(_BINDING_IDS | {"HTTPSYS_SNI_BINDING", "URLACL_CONFLICT"},
              "No automatic fix for this one: " + "; ".join(sorted(set(skipped.values()))) + ".", fixed)
    if not a.https:
        guide(_BINDING_IDS, "No automatic fix with TLS offload (UseHttps = 0): remove the binding by hand.", fixed)
    elif target is None:
        guide(
            _BINDING_IDS | _CERTIFICATE_IDS | {"SSTP_CERT_EXPIRING"},
            "No automatic fix: no certificate in LocalMachine\\My has a private key, the Server Authentication "
            "EKU, a current validity period"
            + (f" and the name {a.public_name}" if a.public_name else " and the SSTP certificate's names")
            + ". Import one (with its private key), then check again.",
            fixed,
        )
    if not can_restart:
        guide(
            FIXABLE_IDS,
            "No automatic fix: the Remote Access service is "
            + ("missing" if remote_access is None else "disabled")
            + "; enable it (Set-Service RemoteAccess -StartupType Automatic) first.",
            fixed,
        )
    guide(
        frozenset({"SSTP_CERT_EXPIRING", "SSTP_CERT_WEAK", "SSTP_CERT_NO_REVOCATION_URL"}),
        "Renew or replace the certificate, then check again: the bot offers to bind the new one.",
        fixed,
    )
    return steps, fixed, guidance


def _is_target(a: Analysis, target: StoredCertificate | None, cert_hash: Any) -> bool:
    found = a.certificate(cert_hash) if isinstance(cert_hash, str) else None
    return target is not None and found is not None and found.thumbprint == target.thumbprint


def assess(
    snapshot: Snapshot | Mapping[str, Any] | str | bytes, server: ServerConfig, now: datetime
) -> tuple[list[Finding], Plan | None]:
    """The findings (with `fixable` and guidance) and the plan, from one analysis of the snapshot."""
    snapshot = ensure_snapshot(snapshot)
    a = analyse(snapshot, server, now)
    findings = raw_findings(a)
    steps, fixed, guidance = build_steps(a, findings)
    annotated: list[Finding] = []
    for index, finding in enumerate(findings):
        if index in fixed:
            annotated.append(replace(finding, fixable=True))
        elif index in guidance:
            annotated.append(replace(finding, detail=f"{finding.detail} {guidance[index]}"))
        else:
            annotated.append(finding)
    return annotated, (Plan(steps=tuple(steps), fingerprint=fingerprint(snapshot)) if steps else None)


def plan(
    snapshot: Snapshot | Mapping[str, Any] | str | bytes, findings: Sequence[Finding], server: ServerConfig, now: datetime
) -> Plan | None:
    """The remediation plan for these findings, or None when nothing can be fixed automatically."""
    snapshot = ensure_snapshot(snapshot)
    steps, _, _ = build_steps(analyse(snapshot, server, now), findings)
    if not steps:
        return None
    return Plan(steps=tuple(steps), fingerprint=fingerprint(snapshot))


def _sorted(rows: Iterable[list[Any]]) -> list[list[Any]]:
    """Rows in a stable order (None-safe: sorted by their JSON text)."""
    return sorted(rows, key=lambda row: json.dumps(row))


def fingerprint_data(snapshot: Snapshot) -> dict[str, Any]:
    """The parts of a snapshot a plan depends on, normalised and sorted (no times, users or events)."""
    sstp = snapshot.sstp
    port = snapshot.port
    http_sys = snapshot.http_sys
    remote_access = snapshot.service("RemoteAccess")

    def bindings(items: Sequence[Any] | None) -> list[list[Any]] | None:
        if items is None:
            return None
        return _sorted([b.endpoint.lower(), b.cert_hash, b.app_id] for b in items)

    return {
        "is_admin": snapshot.host.is_admin,
        "sstp": None
        if sstp is None
        else {
            "sha256_hash": sstp.sha256_hash,
            "sha1_hash": sstp.sha1_hash,
            "use_https": sstp.use_https,
            "listener_port": sstp.listener_port,
            "remote_access_thumbprint": sstp.remote_access.thumbprint if sstp.remote_access else None,
        },
        "http_sys": None
        if http_sys is None
        else {
            "ip_bindings": bindings(http_sys.ip_bindings),
            "sni_bindings": bindings(http_sys.sni_bindings),
            "url_reservations": None
            if http_sys.url_reservations is None
            else sorted(r.url for r in http_sys.url_reservations),
        },
        "iis_bindings": None
        if snapshot.iis is None or snapshot.iis.https_bindings is None
        else _sorted([b.site, b.binding_information, b.cert_hash] for b in snapshot.iis.https_bindings),
        "certificates": None
        if snapshot.certificates is None
        else _sorted([c.thumbprint, c.has_private_key] for c in snapshot.certificates),
        "remote_access": None
        if remote_access is None
        else {"status": remote_access.status, "start_type": remote_access.start_type},
        "listeners": None
        if snapshot.listeners is None
        else _sorted([lst.local_address or "", lst.port, lst.pid] for lst in snapshot.listeners if lst.port == port),
    }


def fingerprint(snapshot: Snapshot | Mapping[str, Any] | str | bytes) -> str:
    """SHA-256 (hex) of the canonical JSON of `fingerprint_data`: equal for an unchanged server."""
    snapshot = ensure_snapshot(snapshot)
    canonical = json.dumps(fingerprint_data(snapshot), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
