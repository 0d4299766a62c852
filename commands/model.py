"""Findings, remediation plans and check results: the data every layer passes around.

The JSON shapes produced here are the CLI contract of DESIGN section 7.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

Severity = Literal["critical", "warning", "info"]
CheckStatus = Literal["healthy", "unhealthy", "error"]
SEVERITY_ORDER: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}


class Action(StrEnum):
    """The plan step actions of DESIGN 5 (each carried out by shipped fix scripts, DESIGN 9)."""

    REMOVE_IIS_BINDING = "remove_iis_binding"
    RESTART_IIS = "restart_iis"
    DELETE_HTTPSYS_BINDING = "delete_httpsys_binding"
    DELETE_URL_RESERVATION = "delete_url_reservation"
    BIND_SSTP_CERTIFICATE = "bind_sstp_certificate"
    RESTART_REMOTEACCESS = "restart_remoteaccess"


@dataclass(frozen=True)
class Subject:
    """What a finding is about, typed, so a remedy is matched to its finding without reading evidence.

    Empty (all None) for findings about the server as a whole.
    """

    endpoint: str | None = None  # an HTTP.sys binding: IP:port, [IPv6]:port or hostname:port
    site: str | None = None  # an IIS site ...
    binding_information: str | None = None  # ... and its https binding
    url: str | None = None  # an HTTP.sys URL reservation
    thumbprint: str | None = None  # a certificate


@dataclass(frozen=True)
class Finding:
    """One thing wrong (or worth knowing) about a server. `id` is one of the fixed IDs of DESIGN 4."""

    id: str  # a family's `Id` enum member (commands.rules), a str; plain text for findings built by hand
    severity: Severity
    title: str
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fixable: bool = False
    subject: Subject = field(default_factory=Subject, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "severity": self.severity,
            "title": self.title,
            "detail": self.detail,
            "evidence": self.evidence,
            "fixable": self.fixable,
        }


@dataclass(frozen=True)
class Step:
    """One remediation step: a shipped fix script (`action`) with typed parameters."""

    action: str
    params: dict[str, str | int]
    description: str
    disruptive: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "action": str(self.action),
            "params": dict(self.params),
            "description": self.description,
            "disruptive": self.disruptive,
        }


@dataclass(frozen=True)
class Plan:
    """An ordered list of steps plus the fingerprint of the snapshot parts it depends on."""

    steps: tuple[Step, ...]
    fingerprint: str

    def to_json(self) -> dict[str, Any]:
        return {"steps": [s.to_json() for s in self.steps], "fingerprint": self.fingerprint}

    @property
    def disruptive(self) -> bool:
        return any(s.disruptive for s in self.steps)


def is_healthy(findings: list[Finding]) -> bool:
    """Healthy means no critical and no warning finding (DESIGN 4)."""
    return not any(f.severity in ("critical", "warning") for f in findings)


def sort_findings(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.id))


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; naive times are taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, the form used in every JSON output. Naive times are taken as UTC."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class CheckResult:
    """The outcome of checking one server (from a live probe or from a snapshot file)."""

    server: str
    checked_at: datetime
    findings: list[Finding] = field(default_factory=list)
    plan: Plan | None = None
    error_kind: str | None = None
    error_message: str | None = None
    vpn_connections: int | None = None
    snapshot: dict[str, Any] | None = None

    @property
    def status(self) -> CheckStatus:
        if self.error_kind is not None:
            return "error"
        return "healthy" if is_healthy(self.findings) else "unhealthy"

    def to_json(self) -> dict[str, Any]:
        """The `--json` shape of `check` and `diagnose` (DESIGN 7)."""
        return {
            "server": self.server,
            "status": self.status,
            "checked_at": format_time(self.checked_at),
            "findings": [f.to_json() for f in sort_findings(self.findings)],
            "plan": self.plan.to_json() if self.plan is not None else None,
            "error": (
                None
                if self.error_kind is None
                else {"kind": self.error_kind, "message": self.error_message or ""}
            ),
        }
