"""The planner (DESIGN 5): orders the steps the rule families propose into one plan. Pure.

It decides nothing about a finding: it keeps each step once, drops a Remote Access restart when the
plan binds the certificate (binding restarts it), orders the phases (IIS bindings, restart IIS, HTTP.sys
bindings, SNI bindings, URL reservations, bind or restart), and marks a finding fixable when its
remedy's steps are in the plan. A finding that blocks fixes (not elevated, another program on the
port, an outdated JEA endpoint) replaces every remedy with its guidance. No plan is proposed when it
would resolve no critical or warning finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from commands.model import Action, Finding, Step
from commands.rules import FIXABLE_IDS
from commands.rules.base import Detected, PlannedStep


def order_steps(detected: Sequence[Detected]) -> tuple[Step, ...]:
    """The steps of these remedies, each once, in phase order."""
    unique: dict[object, tuple[int, PlannedStep]] = {}
    for d in detected:
        for s in d.remedy.steps:
            unique.setdefault(s.key, (len(unique), s))
    steps = [s for _, s in sorted(unique.values(), key=lambda item: (item[1].phase, item[1].rank, item[0]))]
    if any(s.action is Action.BIND_SSTP_CERTIFICATE for s in steps):
        steps = [s for s in steps if s.action is not Action.RESTART_REMOTEACCESS]
    return tuple(Step(s.action, dict(s.params), s.description, s.disruptive) for s in steps)


def _with_guidance(f: Finding, guidance: str | None) -> Finding:
    if guidance is None or f.severity == "info":
        return f
    return replace(f, detail=f"{f.detail} {guidance}")


def plan_findings(detected: Sequence[Detected]) -> tuple[list[Finding], tuple[Step, ...]]:
    """The findings (with `fixable` set and guidance added) and the plan's steps (empty: no plan)."""
    gate = next((d.blocks_fixes for d in detected if d.blocks_fixes), None)
    if gate is not None:
        return [_with_guidance(d.finding, gate if d.finding.id in FIXABLE_IDS else None) for d in detected], ()
    chosen = [d for d in detected if d.remedy.steps]
    if not any(d.finding.severity != "info" for d in chosen):
        chosen = []
    planned = {id(d) for d in chosen}  # by identity: comparing findings deeply made this quadratic
    findings = [
        replace(d.finding, fixable=True) if id(d) in planned else _with_guidance(d.finding, d.remedy.guidance)
        for d in detected
    ]
    return findings, order_steps(chosen)
