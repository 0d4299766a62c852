"""Remediation plans (DESIGN 5): ordered fix-script steps for the findings of one snapshot. Pure.

Each rule family (`commands.rules`) proposes the remedy of each finding it detects; `commands.planner`
orders them. This module is the entry point callers use (`assess`, `plan`) and the plan's fingerprint.

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
from datetime import datetime
from typing import Any

from commands.analysis import analyse
from commands.diagnosis import ensure_snapshot
from commands.model import Finding, Plan
from commands.planner import plan_findings
from commands.rules import CATALOGUE, detect_all
from commands.rules import FIXABLE_IDS as _FIXABLE
from commands.server import ServerConfig
from commands.snapshot import Snapshot

# Findings a plan can fix (given the right circumstances), and those no plan ever fixes.
FIXABLE_IDS: frozenset[str] = frozenset(_FIXABLE)
GUIDANCE_ONLY_IDS: frozenset[str] = frozenset(CATALOGUE) - FIXABLE_IDS


def assess(
    snapshot: Snapshot | Mapping[str, Any] | str | bytes, server: ServerConfig, now: datetime
) -> tuple[list[Finding], Plan | None]:
    """The findings (with `fixable` and guidance) and the plan, from one analysis of the snapshot."""
    snapshot = ensure_snapshot(snapshot)
    findings, steps = plan_findings(detect_all(analyse(snapshot, server, now)))
    return findings, (Plan(steps=steps, fingerprint=fingerprint(snapshot)) if steps else None)


def plan(
    snapshot: Snapshot | Mapping[str, Any] | str | bytes, findings: Sequence[Finding], server: ServerConfig, now: datetime
) -> Plan | None:
    """The remediation plan for this snapshot, or None when nothing can be fixed automatically.

    `findings` is accepted for the callers' convenience; the plan follows from the snapshot alone, as the
    findings do.
    """
    _, result = assess(snapshot, server, now)
    return result


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

    data: dict[str, Any] = {
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
    data.update(_release2_fingerprint_data(snapshot))
    return data


def _release2_fingerprint_data(snapshot: Snapshot) -> dict[str, Any]:
    """The optional fields of DESIGN 3 [2] a plan depends on, only when the probe sent them: a snapshot
    without them keeps the fingerprint it had before the second release."""
    out: dict[str, Any] = {}
    sstp = snapshot.sstp
    if sstp is not None and sstp.remote_access is not None and sstp.remote_access.directaccess is not None:
        out["directaccess"] = sstp.remote_access.directaccess
    unusable = sorted(c.thumbprint for c in snapshot.certificates or () if c.private_key_usable is False)
    if unusable:
        out["private_key_unusable"] = unusable
    if snapshot.http_sys is not None and snapshot.http_sys.registered_urls is not None:
        out["registered_urls"] = sorted(url.upper() for url in snapshot.http_sys.registered_urls)
    if snapshot.endpoint is not None:
        out["endpoint"] = [snapshot.endpoint.configuration_name, snapshot.endpoint.module_version]
    return out


def fingerprint(snapshot: Snapshot | Mapping[str, Any] | str | bytes) -> str:
    """SHA-256 (hex) of the canonical JSON of `fingerprint_data`: equal for an unchanged server."""
    snapshot = ensure_snapshot(snapshot)
    canonical = json.dumps(fingerprint_data(snapshot), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
