"""Rule family: the running server (session, Remote Access, the SSTP listener, events, the probe).

NOT_ELEVATED, PROBE_INCOMPLETE, REMOTEACCESS_STOPPED, PORT_OWNED_BY_OTHER_PROCESS, SSTP_NOT_LISTENING,
SSTP_ERROR_EVENTS (DESIGN 3 [2], 4; DOMAIN 9).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Any

from commands.analysis import HTTP_SYS_PID, SSTP_URL_PATH, Analysis
from commands.model import format_time
from commands.rules.base import Collected, Detected, finding, restart_remoteaccess
from commands.snapshot import Event

SSTP_EVENT_IDS = frozenset({8, 9, 12, 13, 18, 21})
SCHANNEL_EVENT_IDS = frozenset({36870})
EVENT_WINDOW = timedelta(hours=24)



class Id(StrEnum):
    """The finding IDs this family raises (DESIGN 4), str-valued: JSON and text comparisons stay the same."""

    NOT_ELEVATED = "NOT_ELEVATED"
    PROBE_INCOMPLETE = "PROBE_INCOMPLETE"
    REMOTEACCESS_STOPPED = "REMOTEACCESS_STOPPED"
    PORT_OWNED_BY_OTHER_PROCESS = "PORT_OWNED_BY_OTHER_PROCESS"
    SSTP_NOT_LISTENING = "SSTP_NOT_LISTENING"
    SSTP_ERROR_EVENTS = "SSTP_ERROR_EVENTS"


# What the catalogue reads (docs/findings.md is tested against it): every ID, and those a remedy can resolve.
FINDINGS: frozenset[Id] = frozenset(Id)
FIXABLE: frozenset[Id] = frozenset({Id.REMOTEACCESS_STOPPED, Id.SSTP_NOT_LISTENING})


def detect(a: Analysis, prior: Sequence[Detected] = ()) -> list[Detected]:
    """The runtime findings of this snapshot, each with its remedy."""
    out = Collected()
    _session(a, out)
    _service(a, out)
    _listener(a, out)
    _events(a, out)
    return out.items


def _session(a: Analysis, out: Collected) -> None:
    snap = a.snapshot
    if snap.host.is_admin is False:
        out.add(
            finding(
                Id.NOT_ELEVATED,
                "critical",
                "The remote session is not elevated: fixes cannot run",
                "netsh http, iisreset, Set-RemoteAccess and service restarts need administrator rights. "
                "Over WinRM a local account is UAC-filtered unless LocalAccountTokenFilterPolicy=1; use a "
                "domain account in the local Administrators group. Some readings may be incomplete.",
                computer_name=snap.host.computer_name,
            ),
            blocks_fixes="No automatic fix: the remote session is not elevated (see NOT_ELEVATED).",
        )
    if snap.probe_errors:
        out.add(
            finding(
                Id.PROBE_INCOMPLETE,
                "warning",
                f"The probe could not read {len(snap.probe_errors)} section(s): "
                f"{', '.join(sorted({e.section for e in snap.probe_errors}))}",
                "Some findings may be missing because parts of the server's state could not be read.",
                probe_errors=[{"section": e.section, "message": e.message} for e in snap.probe_errors],
            )
        )


def _service(a: Analysis, out: Collected) -> None:
    remote_access = a.remote_access
    if a.snapshot.services is None or (remote_access is not None and remote_access.running):
        return
    out.add(
        finding(
            Id.REMOTEACCESS_STOPPED,
            "critical",
            "The Remote Access service is not running"
            if remote_access is not None
            else "The Remote Access service was not found",
            "SSTP is served by the Routing and Remote Access service (RemoteAccess); while it is not "
            "running no VPN client can connect.",
            status=remote_access.status if remote_access else None,
            start_type=remote_access.start_type if remote_access else None,
        ),
        restart_remoteaccess(a),
    )


def _listener(a: Analysis, out: Collected) -> None:
    foreign = [lst for lst in a.listeners or () if lst.pid is not None and lst.pid != HTTP_SYS_PID]
    if foreign:
        holders = sorted({f"{lst.process or 'unknown process'} (PID {lst.pid})" for lst in foreign})
        out.add(
            finding(
                Id.PORT_OWNED_BY_OTHER_PROCESS,
                "critical",
                f"Port {a.port} is held by {', '.join(holders)}",
                f"Everything served by HTTP.sys listens as PID 4 (System). Another program holds port {a.port}, "
                "so SSTP cannot listen there. Stop or reconfigure that program; the bot will not touch it.",
                port=a.port,
                listeners=[
                    {"local_address": lst.local_address, "port": lst.port, "pid": lst.pid, "process": lst.process}
                    for lst in foreign
                ],
            ),
            blocks_fixes=f"No automatic fix while another program holds port {a.port} (see PORT_OWNED_BY_OTHER_PROCESS).",
        )
        return
    remote_access = a.remote_access
    if remote_access is None or not remote_access.running:
        return
    if a.sstp_registered is not None:
        # DESIGN 3 [2]: a PID 4 listener alone cannot tell SSTP from IIS, AD FS or RD Gateway; SSTP's URL
        # in HTTP.sys's registrations can.
        if a.sstp_registered:
            return
        title = f"Remote Access is running but SSTP's URL is not registered in HTTP.sys on port {a.port}"
        why = (
            f"HTTP.sys lists the URLs registered on port {a.port}, and SSTP's "
            f"(https://+:{a.port}{SSTP_URL_PATH}) is not among them"
        )
        evidence: dict[str, Any] = {"registered_urls": list(a.snapshot.http_sys.registered_urls or ())}  # type: ignore[union-attr]
    elif a.listeners is not None and not a.listeners:
        title = f"Remote Access is running but nothing listens on port {a.port}"
        why = "After a healthy start SSTP listens on its port through HTTP.sys (PID 4). Nothing does"
        evidence = {}
    else:
        return
    out.add(
        finding(
            Id.SSTP_NOT_LISTENING,
            "critical",
            title,
            f"{why}, so SSTP failed to start its listener (see the RasSstp events); restarting Remote "
            "Access usually recovers it.",
            port=a.port,
            **evidence,
        ),
        restart_remoteaccess(a),
    )


def _relevant(event: Event) -> bool:
    provider = event.provider.lower()
    return ("rassstp" in provider and event.id in SSTP_EVENT_IDS) or (
        "schannel" in provider and event.id in SCHANNEL_EVENT_IDS
    )


def _events(a: Analysis, out: Collected) -> None:
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
    in_window = [e for e in events if _relevant(e) and e.time >= window_start]
    relevant = [e for e in in_window if started_at is None or e.time >= started_at]
    ignored = len(in_window) - len(relevant)
    if not relevant:
        return
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
    omitted = a.snapshot.events_omitted
    if omitted:
        # DESIGN 3 [2]: the probe caps each event query; say how many more there were.
        detail += f" The probe left out {omitted} more matching event(s) (per-query cap)."
        extra["omitted"] = omitted
    out.add(
        finding(
            Id.SSTP_ERROR_EVENTS,
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
    )
