"""Rule family: what a VPN client sees (DESIGN 11 [2]), the last word on the seed's error.

CLIENT_CERT_MISMATCH, CLIENT_TLS_FAILED, CLIENT_UNREACHABLE, SSTP_HANDSHAKE_REFUSED. No client
findings when `client_view` is null.

These are symptoms. A client finding is fixable when the server-side findings detected before it
explain it and their steps are in the plan: its remedy is then the union of their remedies, so it is
resolved by the same binding plan. Otherwise (a load balancer, a firewall, something the probe cannot
see) it carries guidance only. CLIENT_UNREACHABLE is never fixable: the bot cannot tell a firewall
between itself and the server from a server that is down.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from commands.analysis import Analysis, iis_binding_certificate
from commands.model import Subject
from commands.rules.base import Collected, Detected, PlannedStep, Remedy, finding
from commands.rules.bindings import Id as B
from commands.rules.certificate import Id as C
from commands.rules.runtime import Id as R
from commands.snapshot import ClientView, Handshake, normalise_hex


class Id(StrEnum):
    """The finding IDs this family raises (DESIGN 4), str-valued: JSON and text comparisons stay the same."""

    CLIENT_CERT_MISMATCH = "CLIENT_CERT_MISMATCH"
    CLIENT_TLS_FAILED = "CLIENT_TLS_FAILED"
    CLIENT_UNREACHABLE = "CLIENT_UNREACHABLE"
    SSTP_HANDSHAKE_REFUSED = "SSTP_HANDSHAKE_REFUSED"


# What the catalogue reads (docs/findings.md is tested against it): every ID, and those a remedy can resolve.
FINDINGS: frozenset[Id] = frozenset(Id)
FIXABLE: frozenset[Id] = frozenset({Id.CLIENT_CERT_MISMATCH, Id.CLIENT_TLS_FAILED, Id.SSTP_HANDSHAKE_REFUSED})

# Server-side findings that explain each client finding (their remedies resolve it).
EXPLAINED_BY: dict[Id, frozenset[StrEnum]] = {
    Id.CLIENT_CERT_MISMATCH: frozenset(
        {B.SSTP_HASH_MISMATCH, B.SSTP_IP_BINDING_MISMATCH, B.HTTPSYS_FOREIGN_BINDING, B.HTTPSYS_SNI_BINDING,
         B.IIS_HTTPS_BINDING, C.SSTP_CERT_RENEWAL_NOT_BOUND}
    ),
    Id.CLIENT_TLS_FAILED: frozenset(
        {B.HTTPSYS_BINDING_MISSING, C.SSTP_CERT_NOT_FOUND, C.SSTP_CERT_NO_PRIVATE_KEY, C.SSTP_CERT_UNUSABLE}
    ),
    Id.SSTP_HANDSHAKE_REFUSED: frozenset(
        {R.REMOTEACCESS_STOPPED, R.SSTP_NOT_LISTENING, B.URLACL_CONFLICT, B.IIS_HTTPS_BINDING, B.SSTP_HASH_MISMATCH}
    ),
}
UNEXPLAINED = (
    "The server's own state does not explain it: look between the bot and the server (a load balancer "
    "or reverse proxy terminating TLS, a firewall, NAT to another host) and check again."
)



def detect(a: Analysis, prior: Sequence[Detected] = ()) -> list[Detected]:
    """The client findings of this snapshot; `prior` are the server-side findings detected before."""
    view = a.snapshot.client_view
    if view is None:
        return []
    out = Collected()
    _unreachable(view, out)
    tls_failed = _tls_failed(a, view, prior, out)
    _cert_mismatch(a, view, prior, out)
    _handshake_refused(a, view, prior, out, tls_failed)
    return out.items


def _explained(id: Id, prior: Sequence[Detected]) -> Remedy:
    """The union of the remedies of the prior findings that explain `id`, or guidance when none does."""
    explaining = [d for d in prior if d.finding.id in EXPLAINED_BY[id] and d.finding.severity != "info"]
    steps: list[PlannedStep] = [s for d in explaining for s in d.remedy.steps]
    if steps:
        return Remedy(steps=tuple(steps))
    if explaining:
        names = ", ".join(sorted({str(d.finding.id) for d in explaining}))
        return Remedy(guidance=f"The server's own state explains it ({names}); see the guidance there.")
    return Remedy(guidance=UNEXPLAINED)


def _name(h: Handshake) -> str:
    return f"SNI {h.sni}" if h.sni else "no SNI"


def _unreachable(view: ClientView, out: Collected) -> None:
    if not view.handshakes or any(h.ok or (h.error is not None and h.error.kind == "tls") for h in view.handshakes):
        return
    errors = "; ".join(f"{_name(h)}: {h.error.kind if h.error else 'failed'} ({h.error.message if h.error else ''})" for h in view.handshakes)
    out.add(
        finding(
            Id.CLIENT_UNREACHABLE,
            "warning",
            f"The bot could not connect to {view.endpoint or 'the SSTP endpoint'} as a VPN client would",
            f"No attempt got as far as a TLS answer: each was refused, found no route, or timed out ({errors}). "
            "The server may be down, or only a "
            "firewall between the bot and the server may block the bot: check from a client network.",
            Subject(endpoint=view.endpoint),
            endpoint=view.endpoint,
            handshakes=[_handshake_evidence(h) for h in view.handshakes],
        ),
        Remedy(guidance="No automatic fix: the bot cannot tell a firewall in its own way from a server that is down."),
    )


def _tls_failed(a: Analysis, view: ClientView, prior: Sequence[Detected], out: Collected) -> bool:
    failed = [h for h in view.handshakes if not h.ok and h.error is not None and h.error.kind == "tls"]
    if not failed:
        return False
    out.add(
        finding(
            Id.CLIENT_TLS_FAILED,
            "critical",
            f"TLS to {view.endpoint or 'the SSTP endpoint'} fails ({', '.join(_name(h) for h in failed)})",
            "The bot connected over TCP but the TLS handshake failed ("
            + "; ".join(f"{_name(h)}: {h.error.message if h.error else ''}" for h in failed)
            + "), so VPN clients cannot connect at all.",
            Subject(endpoint=view.endpoint),
            endpoint=view.endpoint,
            handshakes=[_handshake_evidence(h) for h in failed],
        ),
        _explained(Id.CLIENT_TLS_FAILED, prior),
    )
    return True


def _expected(a: Analysis) -> tuple[str | None, frozenset[str]]:
    """(SHA-256, SHA-1 values) of the certificate clients should be served; (None, {}) when unknown."""
    if not a.https:
        offload = a.server.offload_sha256
        return (normalise_hex(offload) if offload else None), frozenset()
    cert = a.sstp_certificate
    sstp = a.snapshot.sstp
    sha256 = cert.sha256 if cert is not None else (sstp.sha256_hash if sstp is not None else None)
    return sha256, a.sstp_thumbprints


def _served_by_server(a: Analysis, h: Handshake) -> bool:
    """The certificate seen is one the snapshot's own bindings serve on the SSTP port."""
    hashes = {b.cert_hash for b in a.ip_bindings + a.sni_bindings} | {iis_binding_certificate(a, b) for b in a.iis_bindings}
    return h.cert_sha1 is not None and h.cert_sha1 in hashes


def _cert_mismatch(a: Analysis, view: ClientView, prior: Sequence[Detected], out: Collected) -> None:
    sha256, sha1s = _expected(a)
    if sha256 is None and not sha1s:
        return
    wrong = [
        h
        for h in view.handshakes
        if h.ok
        and (h.cert_sha256 is not None or h.cert_sha1 is not None)
        and not ((sha256 is not None and h.cert_sha256 == sha256) or (h.cert_sha1 is not None and h.cert_sha1 in sha1s))
    ]
    if not wrong:
        return
    remedy = _explained(Id.CLIENT_CERT_MISMATCH, prior)
    if remedy.steps and not all(_served_by_server(a, h) for h in wrong):
        remedy = Remedy(guidance=UNEXPLAINED)
    out.add(
        finding(
            Id.CLIENT_CERT_MISMATCH,
            "critical",
            f"VPN clients are served another certificate than SSTP's ({', '.join(_name(h) for h in wrong)})",
            "A TLS handshake to the SSTP endpoint, made as a VPN client makes it, received a certificate "
            + ("other than the load balancer's configured offload_sha256" if not a.https else "that is not the SSTP certificate")
            + ": clients fail with the SSTP certificate binding error right now.",
            Subject(endpoint=view.endpoint, thumbprint=wrong[0].cert_sha1),
            endpoint=view.endpoint,
            expected_sha256=sha256,
            handshakes=[_handshake_evidence(h) for h in wrong],
        ),
        remedy,
    )


def _handshake_refused(
    a: Analysis, view: ClientView, prior: Sequence[Detected], out: Collected, tls_failed: bool
) -> None:
    request = view.sstp
    if request is None or request.ok:
        return
    if request.http_status is None and tls_failed and request.error is not None and request.error.kind == "tls":
        return  # the TLS failure already says it: the request never reached HTTP
    answer = (
        f"HTTP {request.http_status}"
        if request.http_status is not None
        else f"{request.error.kind}: {request.error.message}" if request.error else "no answer"
    )
    out.add(
        finding(
            Id.SSTP_HANDSHAKE_REFUSED,
            "critical",
            f"SSTP_DUPLEX_POST to SSTP's URL was not accepted ({answer})",
            "TLS worked, but the SSTP request a VPN client sends first did not get HTTP 200: another "
            "service answers on the port (IIS answers 404), or SSTP is not listening or refused it.",
            Subject(endpoint=view.endpoint),
            endpoint=view.endpoint,
            sni=request.sni,
            http_status=request.http_status,
            error=None if request.error is None else {"kind": request.error.kind, "message": request.error.message},
        ),
        _explained(Id.SSTP_HANDSHAKE_REFUSED, prior),
    )


def _handshake_evidence(h: Handshake) -> dict[str, object]:
    return {
        "sni": h.sni,
        "ok": h.ok,
        "error": None if h.error is None else {"kind": h.error.kind, "message": h.error.message},
        "tls_version": h.tls_version,
        "cert_sha256": h.cert_sha256,
        "cert_sha1": h.cert_sha1,
    }
