"""One check from probe output to result: parse, diagnose, plan."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from commands.errors import SnapshotError
from commands.model import CheckResult
from commands.remediation import assess
from commands.server import ServerConfig
from commands.snapshot import Snapshot, parse_snapshot


def evaluate(raw_snapshot: str | bytes | Mapping[str, Any], server: ServerConfig, now: datetime) -> CheckResult:
    """Check one server from its snapshot. A malformed snapshot gives a result with error kind `bad_output`."""
    try:
        snapshot = parse_snapshot(raw_snapshot)
    except SnapshotError as exc:
        return CheckResult(server=server.name, checked_at=now, error_kind="bad_output", error_message=str(exc))
    return evaluate_snapshot(snapshot, server, now)


def evaluate_snapshot(snapshot: Snapshot, server: ServerConfig, now: datetime) -> CheckResult:
    """Diagnose and plan for an already parsed snapshot."""
    findings, plan = assess(snapshot, server, now)
    return CheckResult(
        server=server.name,
        checked_at=now,
        findings=findings,
        plan=plan,
        vpn_connections=snapshot.vpn_connections,
        snapshot=dict(snapshot.raw),
    )
