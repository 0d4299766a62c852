"""What every rule family gives: a finding together with the remedy it proposes.

A remedy is either steps (each in a phase of DESIGN 5, the planner orders the phases) that together
resolve the finding, or guidance for an admin. Detection and fix of a finding live in one family
module; the planner only orders phases, removes duplicates and decides whether a plan is worth
proposing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from commands.analysis import WILDCARD_HOSTS, Analysis, app_id_owner, describe_certificate, is_sstp_app_id
from commands.errors import UsageError
from commands.model import Action, Finding, Severity, Subject
from commands.scripts import validate_params
from commands.snapshot import SslBinding


class Phase(IntEnum):
    """The order of a plan (DESIGN 5): IIS first, Remote Access last."""

    REMOVE_IIS_BINDINGS = 1
    RESTART_IIS = 2
    DELETE_BINDINGS = 3
    DELETE_SNI_BINDINGS = 4
    DELETE_URL_RESERVATIONS = 5
    BIND_OR_RESTART = 6


@dataclass(frozen=True)
class PlannedStep:
    """A validated step, its phase, and its rank inside the phase (the snapshot's order)."""

    phase: Phase
    rank: int
    action: Action
    params: Mapping[str, str | int]
    description: str
    disruptive: bool = False

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str | int], ...]]:
        """Two steps with the same key do the same thing (the planner keeps one)."""
        return str(self.action), tuple(sorted(self.params.items()))


@dataclass(frozen=True)
class Remedy:
    """Steps that together resolve a finding, or guidance (or neither: nothing to say)."""

    steps: tuple[PlannedStep, ...] = ()
    guidance: str | None = None

    @staticmethod
    def of(*parts: Remedy | PlannedStep | Iterable[PlannedStep]) -> Remedy:
        """Steps from steps and remedies; a part that is guidance makes the whole one guidance."""
        steps: list[PlannedStep] = []
        for part in parts:
            if isinstance(part, Remedy):
                if part.guidance is not None and not part.steps:
                    return part
                steps.extend(part.steps)
            elif isinstance(part, PlannedStep):
                steps.append(part)
            else:
                steps.extend(part)
        return Remedy(steps=tuple(steps))


NO_REMEDY = Remedy()


@dataclass(frozen=True)
class Detected:
    """A finding and the remedy its family proposes. `blocks_fixes`: guidance that replaces every
    other remedy while this finding stands (not elevated, another program on the port, an outdated
    JEA endpoint)."""

    finding: Finding
    remedy: Remedy = NO_REMEDY
    blocks_fixes: str | None = None


def finding(
    id: StrEnum, severity: Severity, title: str, detail: str, subject: Subject | None = None, **evidence: Any
) -> Finding:
    """A finding with `fixable` still False (the planner sets it)."""
    return Finding(id=id, severity=severity, title=title, detail=detail, evidence=evidence, subject=subject or Subject())


def step(
    phase: Phase, action: Action, params: dict[str, Any], description: str, *, rank: int = 0, disruptive: bool = False
) -> Remedy:
    """One validated step as a remedy; a parameter the fix script would refuse gives guidance instead."""
    try:
        clean = validate_params(str(action), params)
    except UsageError as exc:
        return Remedy(guidance=f"No automatic fix for this one: {exc}.")
    return Remedy(steps=(PlannedStep(phase, rank, action, clean, description, disruptive),))


def users_note(a: Analysis) -> str:
    n = a.vpn_users
    if n is None:
        return "Disconnects every connected VPN user."
    if n == 0:
        return "No VPN users are connected right now."
    return f"Disconnects the {n} connected VPN user{'s' if n != 1 else ''}."


def delete_binding(a: Analysis, binding: SslBinding, phase: Phase = Phase.DELETE_BINDINGS) -> Remedy:
    """Delete one HTTP.sys binding (IP or SNI)."""
    owner = app_id_owner(binding.app_id)
    cert = describe_certificate(a.certificate(binding.cert_hash), binding.cert_hash)
    if phase is Phase.DELETE_SNI_BINDINGS:
        text = f"Delete the SNI binding {binding.endpoint} (owner: {owner}, certificate {cert}), which overrides SSTP's binding."
    else:
        text = f"Delete the HTTP.sys certificate binding on {binding.endpoint} (owner: {owner}, certificate {cert})."
    return step(phase, Action.DELETE_HTTPSYS_BINDING, {"Endpoint": binding.endpoint}, text, rank=a.rank(binding))


def restart_remoteaccess(a: Analysis) -> Remedy:
    """Start or restart Remote Access (the planner drops it when the plan binds, which restarts too)."""
    if not a.can_restart:
        return Remedy(guidance=cannot_restart_guidance(a))
    ra = a.remote_access
    stopped = ra is not None and not ra.running
    return step(
        Phase.BIND_OR_RESTART,
        Action.RESTART_REMOTEACCESS,
        {},
        f"{'Start' if stopped else 'Restart'} the Remote Access service and wait until SSTP listens on port "
        f"{a.port}. {users_note(a)}",
        rank=1,
        disruptive=True,
    )


def cannot_restart_guidance(a: Analysis) -> str:
    return (
        "No automatic fix: the Remote Access service is "
        + ("missing" if a.remote_access is None else "disabled")
        + "; enable it (Set-Service RemoteAccess -StartupType Automatic) first."
    )


def no_candidate_guidance(a: Analysis) -> str:
    if a.replacement_names is None:
        # Without a public name and a readable SSTP certificate, nothing says which name VPN clients
        # dial: binding whatever certificate is in the store could serve a web server's name to them.
        return (
            "No automatic fix: the certificate SSTP is configured with is not in LocalMachine\\My (or cannot be "
            "read, or names no host) and this server has no public_name, so the bot cannot tell which certificate VPN clients "
            "expect. Set public_name for this server in the configuration (or bind the right certificate in "
            "the Remote Access Management console), then check again."
        )
    return (
        "No automatic fix: no certificate in LocalMachine\\My has a usable private key, the Server "
        "Authentication EKU, a current validity period, a key and signature Windows clients accept"
        + (f" and the name {a.public_name}" if a.public_name else " and the SSTP certificate's names")
        + ". Import one (with its private key), then check again."
    )


DIRECTACCESS_GUIDANCE = (
    "No automatic fix: DirectAccess is enabled on this server and ties the certificate and the URL "
    "reservations to its own settings (DESIGN 4). Change the certificate with the Remote Access "
    "Management console (or Set-DAServer / Set-RemoteAccess) so DirectAccess follows, then check again."
)


def rebind_guidance(a: Analysis) -> str | None:
    """Why the target certificate cannot be bound, or None when it can."""
    if not a.https:
        return "No automatic fix with TLS offload (UseHttps = 0): remove the binding by hand."
    if a.target is None:
        return DIRECTACCESS_GUIDANCE if a.held_back_by_directaccess else no_candidate_guidance(a)
    if not a.can_restart:
        return cannot_restart_guidance(a)
    return None


def rebind(a: Analysis) -> Remedy:
    """Bind the target certificate in RRAS after deleting every IP binding on the port that would stay
    in its way (DESIGN 5: RRAS creates its HTTP.sys bindings only where none exist, DOMAIN 0)."""
    why_not = rebind_guidance(a)
    if why_not is not None:
        return Remedy(guidance=why_not)
    target = a.target
    assert target is not None
    parts: list[Remedy] = [
        delete_binding(a, b)
        for b in a.ip_bindings
        if b.cert_hash != target.thumbprint or not is_sstp_app_id(b.app_id)
    ]
    current = a.sstp_certificate
    what = "Bind again" if current is not None and current.thumbprint == target.thumbprint else "Bind"
    parts.append(
        step(
            Phase.BIND_OR_RESTART,
            Action.BIND_SSTP_CERTIFICATE,
            {"Thumbprint": target.thumbprint},
            f"{what} {describe_certificate(target)} as the SSTP certificate in RRAS (Set-RemoteAccess "
            f"-SslCertificate) and restart Remote Access; RRAS then creates its HTTP.sys bindings on "
            f"0.0.0.0:{a.port} and [::]:{a.port}. {users_note(a)}",
            disruptive=True,
        )
    )
    return Remedy.of(*parts)


def when_rebinding(a: Analysis) -> Remedy:
    """The rebind when the plan rebinds anyway (a finding that needs no bind of its own), else nothing."""
    return rebind(a) if a.rebind_needed and rebind_guidance(a) is None else NO_REMEDY


@dataclass
class Collected:
    """The findings of one family in detection order."""

    items: list[Detected] = field(default_factory=list)

    def add(self, f: Finding, remedy: Remedy = NO_REMEDY, blocks_fixes: str | None = None) -> None:
        self.items.append(Detected(f, remedy, blocks_fixes))


__all__ = ["WILDCARD_HOSTS", "Collected", "Detected", "Phase", "PlannedStep", "Remedy"]
