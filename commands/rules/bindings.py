"""Rule family: HTTP.sys and IIS bindings and URL reservations on the SSTP port, and their remedies.

SSTP_HASH_MISMATCH, SSTP_IP_BINDING_MISMATCH, HTTPSYS_BINDING_MISSING, HTTPSYS_FOREIGN_BINDING,
HTTPSYS_SNI_BINDING, URLACL_CONFLICT, IIS_HTTPS_BINDING (DESIGN 4; DOMAIN 0, 4, 5, 11).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from commands.analysis import (
    WILDCARD_HOSTS,
    Analysis,
    app_id_owner,
    certificate_evidence,
    describe_certificate,
    iis_binding_certificate,
    is_sstp_app_id,
)
from commands.model import Action, Subject
from commands.rules.base import (
    DIRECTACCESS_GUIDANCE,
    NO_REMEDY,
    Collected,
    Detected,
    Phase,
    Remedy,
    delete_binding,
    finding,
    rebind,
    restart_remoteaccess,
    step,
    when_rebinding,
)
from commands.snapshot import IisBinding, SslBinding, UrlReservation


class Id(StrEnum):
    """The finding IDs this family raises (DESIGN 4), str-valued: JSON and text comparisons stay the same."""

    SSTP_HASH_MISMATCH = "SSTP_HASH_MISMATCH"
    SSTP_IP_BINDING_MISMATCH = "SSTP_IP_BINDING_MISMATCH"
    HTTPSYS_BINDING_MISSING = "HTTPSYS_BINDING_MISSING"
    HTTPSYS_FOREIGN_BINDING = "HTTPSYS_FOREIGN_BINDING"
    HTTPSYS_SNI_BINDING = "HTTPSYS_SNI_BINDING"
    URLACL_CONFLICT = "URLACL_CONFLICT"
    IIS_HTTPS_BINDING = "IIS_HTTPS_BINDING"


# What the catalogue reads (docs/findings.md is tested against it): every ID, and those a remedy can resolve.
FINDINGS: frozenset[Id] = frozenset(Id)
FIXABLE: frozenset[Id] = frozenset({Id.SSTP_HASH_MISMATCH, Id.SSTP_IP_BINDING_MISMATCH, Id.HTTPSYS_BINDING_MISSING, Id.HTTPSYS_FOREIGN_BINDING, Id.HTTPSYS_SNI_BINDING, Id.URLACL_CONFLICT, Id.IIS_HTTPS_BINDING})


def _binding_evidence(a: Analysis, binding: SslBinding) -> dict[str, Any]:
    return {
        "endpoint": binding.endpoint,
        "cert_hash": binding.cert_hash,
        "app_id": binding.app_id,
        "owner": app_id_owner(binding.app_id),
        "certificate": certificate_evidence(a.certificate(binding.cert_hash)),
    }


def sstp_evidence(a: Analysis) -> dict[str, Any]:
    sstp = a.snapshot.sstp
    return {
        "sstp_sha256_hash": sstp.sha256_hash if sstp else None,
        "sstp_thumbprint": a.sstp_certificate.thumbprint if a.sstp_certificate else (sstp.sha1_hash if sstp else None),
    }


def _sstp_description(a: Analysis) -> str:
    configured = next(iter(sorted(a.sstp_thumbprints)), None) or (f"SHA-256 {a.sstp_sha256}" if a.sstp_sha256 else None)
    return describe_certificate(a.sstp_certificate, configured)


def detect(a: Analysis, prior: Sequence[Detected] = ()) -> list[Detected]:
    """The binding findings of this snapshot, each with its remedy."""
    out = Collected()
    if a.https and a.bindings_known:
        _hash_mismatch(a, out)
        _ip_binding_mismatch(a, out)
        _binding_missing(a, out)
    for b in a.ip_bindings:
        if not is_sstp_app_id(b.app_id):
            _foreign_binding(a, b, out)
    for b in a.sni_bindings:
        _sni_binding(a, b, out)
    for r in a.url_conflicts:
        _url_conflict(a, r, out)
    for ib in a.iis_bindings:
        _iis_binding(a, ib, out)
    return out.items


def _hash_mismatch(a: Analysis, out: Collected) -> None:
    """The certificate HTTP.sys presents on 0.0.0.0/[::] is not the one SSTP checks (the seed's error)."""
    if not a.sstp_identity_known:
        return
    wrong = [b for b in a.ip_bindings if b.host in WILDCARD_HOSTS and a.is_other_certificate(b.cert_hash)]
    if not wrong:
        return
    endpoints = ", ".join(b.endpoint for b in wrong)
    owners = ", ".join(sorted({app_id_owner(b.app_id) for b in wrong}))
    out.add(
        finding(
            Id.SSTP_HASH_MISMATCH,
            "critical",
            f"HTTP.sys presents a different certificate on {endpoints} than SSTP is configured with",
            "SSTP validates the client's crypto binding against the certificate configured in RRAS "
            f"(SHA256CertificateHash: {_sstp_description(a)}), but HTTP.sys sends the certificate bound on "
            f"{endpoints} in the TLS handshake (owner: {owners}). Clients fail with "
            "the SSTP certificate binding error. RRAS only creates its HTTP.sys binding where none "
            "exists, so it never corrects this by itself: the wrong binding must be deleted and the "
            "certificate bound again in RRAS.",
            Subject(endpoint=wrong[0].endpoint),
            port=a.port,
            **sstp_evidence(a),
            bindings=[_binding_evidence(a, b) for b in wrong],
        ),
        # The wrong wildcard bindings are deleted and the certificate bound again (RRAS recreates them).
        rebind(a),
    )


def _ip_binding_mismatch(a: Analysis, out: Collected) -> None:
    """Our addition: a specific IP:port binding under SSTP's AppId beats the wildcard (DOMAIN 11)."""
    if not a.sstp_identity_known:
        return
    for b in a.ip_bindings:
        if b.host in WILDCARD_HOSTS or not is_sstp_app_id(b.app_id) or not a.is_other_certificate(b.cert_hash):
            continue
        out.add(
            finding(
                Id.SSTP_IP_BINDING_MISMATCH,
                "critical",
                f"HTTP.sys presents a different certificate on {b.endpoint} than SSTP is configured with",
                f"An HTTP.sys binding for the single address {b.endpoint}, under SSTP's AppId, carries "
                f"{describe_certificate(a.certificate(b.cert_hash), b.cert_hash)} instead of the SSTP "
                f"certificate ({_sstp_description(a)}). A specific IP:port binding takes precedence over the "
                "0.0.0.0 and [::] ones, so SSTP clients connecting to that address fail with the "
                "certificate binding error. Deleting it lets the wildcard binding serve the address.",
                Subject(endpoint=b.endpoint),
                **_binding_evidence(a, b),
                **sstp_evidence(a),
            ),
            _delete_unless_target(a, b),
        )


def _delete_unless_target(a: Analysis, b: SslBinding) -> Remedy:
    """Delete a binding that does not carry the certificate a fix keeps (with the rebind when the plan
    rebinds anyway)."""
    guidance = _binding_guidance(a)
    if guidance is not None:
        return Remedy(guidance=guidance)
    assert a.target is not None
    if b.cert_hash == a.target.thumbprint:
        return NO_REMEDY
    return Remedy.of(delete_binding(a, b), when_rebinding(a))


def _binding_guidance(a: Analysis) -> str | None:
    if not a.https:
        return "No automatic fix with TLS offload (UseHttps = 0): remove the binding by hand."
    rebinding = rebind(a)
    if a.target is None or not a.can_restart:
        return rebinding.guidance
    return None


def _binding_missing(a: Analysis, out: Collected) -> None:
    missing = [f"{host}:{a.port}" for host in WILDCARD_HOSTS if a.ip_binding(host) is None]
    if not missing:
        return
    out.add(
        finding(
            Id.HTTPSYS_BINDING_MISSING,
            "critical",
            f"No HTTP.sys certificate binding on {', '.join(missing)}",
            "SSTP needs HTTP.sys SSL bindings on both 0.0.0.0 and [::] for its port; without them "
            "HTTP.sys cannot complete the TLS handshake for SSTP clients (RasSstp events 12/13/21). "
            "Binding the certificate in RRAS and restarting Remote Access recreates them.",
            Subject(endpoint=missing[0]),
            port=a.port,
            missing_endpoints=missing,
            present_endpoints=[b.endpoint for b in a.ip_bindings],
            **sstp_evidence(a),
        ),
        rebind(a),
    )


def _foreign_binding(a: Analysis, b: SslBinding, out: Collected) -> None:
    """An IP binding on the SSTP port owned by another AppId: critical with another certificate."""
    owner = app_id_owner(b.app_id)
    if a.is_sstp_certificate(b.cert_hash):
        f = finding(
            Id.HTTPSYS_FOREIGN_BINDING,
            "info",
            f"{owner} owns the HTTP.sys binding on {b.endpoint} (same certificate as SSTP)",
            f"The binding on {b.endpoint} carries the SSTP certificate but belongs to {owner}, not to "
            "SSTP. It works today; when the certificate is renewed in one place only, the other "
            "breaks and SSTP clients get the certificate binding error.",
            Subject(endpoint=b.endpoint),
            **_binding_evidence(a, b),
            **sstp_evidence(a),
        )
    else:
        f = finding(
            Id.HTTPSYS_FOREIGN_BINDING,
            "critical",
            f"{owner} owns the HTTP.sys binding on {b.endpoint} with a different certificate",
            f"{owner} has bound {describe_certificate(a.certificate(b.cert_hash), b.cert_hash)} on {b.endpoint}. "
            "Only one certificate can be bound per IP:port, and RRAS does not replace an existing "
            "binding, so SSTP clients connecting there receive the wrong certificate.",
            Subject(endpoint=b.endpoint),
            **_binding_evidence(a, b),
            **sstp_evidence(a),
        )
    # Deleted when its certificate is not the one kept, or when the plan binds again anyway (RRAS then
    # recreates the wildcard bindings under its own AppId).
    remedy = _delete_unless_target(a, b)
    if not remedy.steps and remedy.guidance is None and a.rebind_needed:
        remedy = Remedy.of(delete_binding(a, b), when_rebinding(a))
    out.add(f, remedy)


def _sni_binding(a: Analysis, b: SslBinding, out: Collected) -> None:
    out.add(
        finding(
            Id.HTTPSYS_SNI_BINDING,
            "warning",
            f"SNI binding {b.endpoint} overrides SSTP's binding for clients that send SNI",
            "HTTP.sys looks up hostname:port (SNI) bindings before IP bindings, so clients that ask for "
            f"{b.host} get this binding's certificate instead of SSTP's.",
            Subject(endpoint=b.endpoint),
            **_binding_evidence(a, b),
            **sstp_evidence(a),
        ),
        delete_binding(a, b, Phase.DELETE_SNI_BINDINGS),
    )


def _url_conflict(a: Analysis, r: UrlReservation, out: Collected) -> None:
    """A root reservation of the SSTP port (DESIGN 4 [2]); deleted, then Remote Access restarted."""
    if a.directaccess:
        remedy = Remedy(guidance=DIRECTACCESS_GUIDANCE)
    else:
        rank = a.rank(r)
        delete = step(
            Phase.DELETE_URL_RESERVATIONS,
            Action.DELETE_URL_RESERVATION,
            {"Url": r.url},
            f"Delete the URL reservation {r.url}, which conflicts with SSTP.",
            rank=rank,
        )
        restart = restart_remoteaccess(a)
        remedy = Remedy.of(delete, restart) if restart.steps else delete
    out.add(
        finding(
            Id.URLACL_CONFLICT,
            "critical",
            f"URL reservation {r.url} conflicts with SSTP on port {a.port}",
            "A reservation of the whole SSTP port covers SSTP's own URL and lets another application "
            "claim it; SSTP then cannot secure its URL (RasSstp event 9). SSTP's own reservation is "
            f"https://+:{a.port}/sra_{{BA195980-CD49-458B-9E23-C84EE0ADCD75}}/.",
            Subject(url=r.url),
            url=r.url,
            sddl=r.sddl,
            port=a.port,
        ),
        remedy,
    )


def _iis_binding(a: Analysis, ib: IisBinding, out: Collected) -> None:
    cert_hash = iis_binding_certificate(a, ib)
    evidence: dict[str, Any] = {
        "site": ib.site,
        "binding_information": ib.binding_information,
        "cert_hash": cert_hash,
        "certificate": certificate_evidence(a.certificate(cert_hash)),
        **sstp_evidence(a),
    }
    subject = Subject(site=ib.site, binding_information=ib.binding_information)
    if a.is_sstp_certificate(cert_hash):
        f = finding(
            Id.IIS_HTTPS_BINDING,
            "info",
            f"IIS site '{ib.site}' has an https binding {ib.binding_information} on the SSTP port (same certificate)",
            "IIS and SSTP share port and certificate. This works today, but IIS pushes its own binding "
            "into HTTP.sys: renewing the certificate in IIS or in RRAS only breaks the other one.",
            subject,
            **evidence,
        )
    else:
        f = finding(
            Id.IIS_HTTPS_BINDING,
            "critical",
            f"IIS site '{ib.site}' binds {describe_certificate(a.certificate(cert_hash), cert_hash)} on the SSTP port",
            f"IIS has an https binding ({ib.binding_information}) on port {a.port} with a certificate "
            "that is not the SSTP certificate. IIS writes it into HTTP.sys, replacing the binding SSTP "
            "relies on, which causes the certificate binding error. The fix is to remove the binding "
            "in IIS, restart IIS and assign the certificate in RRAS, not in IIS.",
            subject,
            **evidence,
        )
    out.add(f, _remove_iis_binding(a, ib, cert_hash))


def _remove_iis_binding(a: Analysis, ib: IisBinding, cert_hash: str | None) -> Remedy:
    """Remove the IIS binding and restart IIS, unless it carries the certificate a fix keeps."""
    guidance = _binding_guidance(a)
    if guidance is not None:
        return Remedy(guidance=guidance)
    assert a.target is not None
    if cert_hash == a.target.thumbprint:
        return NO_REMEDY
    return Remedy.of(
        step(
            Phase.REMOVE_IIS_BINDINGS,
            Action.REMOVE_IIS_BINDING,
            {"Site": ib.site, "BindingInformation": ib.binding_information},
            f"Remove the https binding {ib.binding_information} from IIS site '{ib.site}' "
            f"(it serves {describe_certificate(a.certificate(cert_hash), cert_hash)} on the SSTP port).",
            rank=a.rank(ib),
        ),
        step(
            Phase.RESTART_IIS,
            Action.RESTART_IIS,
            {},
            "Restart IIS (iisreset) so it lets go of the removed binding. Web sites on this server are "
            "unavailable for a few seconds; VPN users are not affected.",
        ),
        when_rebinding(a),
    )
