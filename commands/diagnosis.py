"""Diagnosis: the findings of DESIGN 4 from one snapshot. Pure: data in, data out.

The facts are computed once in `commands.analysis`; each rule family of `commands.rules` detects its
findings and proposes their remedies; `commands.planner` sets `fixable` from the plan it would
propose, so `fixable` always agrees with the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from commands.analysis import IIS_APP_ID, SSTP_APP_ID, analyse
from commands.model import Finding
from commands.planner import plan_findings
from commands.rules import CATALOGUE, detect_all
from commands.server import ServerConfig
from commands.snapshot import Snapshot, parse_snapshot

ALL_FINDING_IDS: tuple[str, ...] = tuple(CATALOGUE)

# Re-exported for callers that import them from here (bot.operations, the engine tests).
__all__ = ["ALL_FINDING_IDS", "IIS_APP_ID", "SSTP_APP_ID", "analyse", "diagnose", "ensure_snapshot"]


def ensure_snapshot(snapshot: Snapshot | str | bytes | Mapping[str, Any]) -> Snapshot:
    """Accept probe output as well as a parsed snapshot (raises SnapshotError when malformed)."""
    return snapshot if isinstance(snapshot, Snapshot) else parse_snapshot(snapshot)


def diagnose(snapshot: Snapshot | Mapping[str, Any] | str | bytes, server: ServerConfig, now: datetime) -> list[Finding]:
    """Every finding of DESIGN 4 for this snapshot, with `fixable` set from the remediation plan."""
    findings, _ = plan_findings(detect_all(analyse(ensure_snapshot(snapshot), server, now)))
    return findings
