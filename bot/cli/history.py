"""`sstp-bot history [SERVER] [--limit N] [--json]` and `sstp-bot history --plan ID [--json]`.

The first lists checks and plans with their outcomes, newest first; the second is one plan's audit
trail (who did what, when, and whether it was allowed). JSON shapes: docs/storage.md.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.text import Text

from bot.cli import Environment, ExitStatus, require_database_folder
from bot.config import Config, load_config
from bot.terminal import make_console, say
from commands.errors import UnknownServer, UsageError
from commands.model import SEVERITY_ORDER, format_time
from storage import AuditRecord, CheckRecord, HistoryEntry, PlanRecord, Repository

_MAX_IDS_SHOWN = 3


def run(args: argparse.Namespace, env: Environment) -> int:
    if args.limit < 1:
        raise UsageError("sstp-bot history: --limit must be at least 1")
    if args.plan is not None and args.server:
        raise UsageError("sstp-bot history: give either SERVER or --plan ID, not both")
    config = load_config(args.config, env.environ)
    require_database_folder(config.database.url)
    with Repository(config.database.url, clock=env.clock, auto_upgrade=config.database.auto_upgrade) as repo:
        repo.expire_due()  # a plan past plan_ttl_minutes reads as EXPIRED, not PROPOSED (DESIGN 6)
        if args.plan is not None:
            return _plan_trail(repo, args.plan, as_json=args.json, env=env)
        server = _stored_name(config, args.server)
        entries = repo.history(server, limit=args.limit)
    if server is not None and not entries and server not in config.servers:
        # Neither in the inventory nor in the history: a typo, like `check NAME` (DESIGN 7 [2]).
        raise UnknownServer(server, list(config.servers))
    if args.json:
        _print_json([entry_to_json(e) for e in entries], env)
        return ExitStatus.OK
    if not entries:
        print(f"No history for {args.server}." if args.server else "No history yet.", file=env.stdout)
        return ExitStatus.OK
    console = _console(env)
    for entry in entries:
        when, name, what, who, status, summary = _row(entry)
        say(console, Text(f"{when}  {name}  {what}  {status}  by {who}"), hang=4)
        say(console, Text(summary, style="dim"), indent=4)
    return ExitStatus.OK


def _stored_name(config: Config, server: str | None) -> str | None:
    """The inventory's spelling of a server name (names are case-insensitive). A server removed from
    the inventory may still have history, so an unknown name is looked up as given."""
    if server is None:
        return None
    for name in config.servers:
        if name.lower() == server.lower():
            return name
    return server


def _plan_trail(repo: Repository, plan_id: int, *, as_json: bool, env: Environment) -> int:
    plan = repo.get_plan(plan_id)  # NotFound -> exit 2 with "plan N not found"
    events = repo.plan_audit(plan_id)
    if as_json:
        _print_json([audit_to_json(e) for e in events], env)
        return ExitStatus.OK
    console = _console(env)
    say(
        console,
        Text(
            f"Plan {plan.id} for {plan.server}: {plan.state}, requested by {plan.requester} "
            f"at {_time(plan.created_at)} from check {plan.check_id}; {_plan_summary(plan)}"
        ),
        hang=2,
    )
    for event in events:
        say(console, Text(f"{_time(event.at)}  {event.action}  {event.outcome}  by {event.actor}"), indent=2, hang=6)
        details = _details_text(event.details)
        if details:
            say(console, Text(details, style="dim"), indent=6)
    return ExitStatus.OK


def _console(env: Environment) -> Console:
    return make_console(env.stdout, env.width)


def _print_json(value: Any, env: Environment) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False), file=env.stdout)


def _time(moment: datetime) -> str:
    return format_time(moment).replace("T", " ").rstrip("Z")


def _row(entry: HistoryEntry) -> tuple[str, str, str, str, str, str]:
    if entry.check is not None:
        check = entry.check
        return (_time(entry.at), entry.server, f"check #{check.id}", check.actor, check.status,
                _check_summary(check))
    assert entry.plan is not None
    plan = entry.plan
    return (_time(entry.at), entry.server, f"plan #{plan.id}", plan.requester, plan.state, _plan_summary(plan))


def _check_summary(check: CheckRecord) -> str:
    if check.error_kind is not None:
        return f"{check.error_kind}: {check.error_message or ''}".strip()
    if not check.findings:
        return "no findings"
    counts = Counter(str(f.get("severity", "?")) for f in check.findings)
    by_severity = ", ".join(
        f"{counts[s]} {s}" for s in sorted(counts, key=lambda s: SEVERITY_ORDER.get(s, 9))
    )
    ordered = sorted(check.findings, key=lambda f: (SEVERITY_ORDER.get(str(f.get("severity")), 9), str(f.get("id"))))
    ids = [str(f.get("id", "?")) for f in ordered]
    shown = ", ".join(ids[:_MAX_IDS_SHOWN]) + (", …" if len(ids) > _MAX_IDS_SHOWN else "")
    return f"{by_severity}: {shown}"


def _plan_summary(plan: PlanRecord) -> str:
    steps = len(plan.steps)
    disruptive = sum(1 for s in plan.steps if s.get("disruptive"))
    parts = [f"{steps} step{'s' if steps != 1 else ''}" + (f" ({disruptive} disruptive)" if disruptive else "")]
    if plan.approver is not None:
        verb = "rejected" if plan.state == "REJECTED" else "approved"
        parts.append(f"{verb} by {plan.approver}")
    if plan.step_results:
        # Out of the plan's steps, not out of the steps that ran: a fix that stopped after step 1 of 5
        # is "1/5 steps ok", never "1/1".
        ok = sum(1 for r in plan.step_results if r.get("ok"))
        parts.append(f"{ok}/{steps} steps ok")
    return "; ".join(parts)


def _details_text(details: dict[str, Any]) -> str:
    reason = details.get("reason")
    # A missing value (`exit_code=None` of a step that reported none) says nothing: leave it out.
    rest = {k: v for k, v in details.items() if k != "reason" and v is not None}
    if isinstance(rest.get("fingerprint"), str) and len(rest["fingerprint"]) > 16:
        rest["fingerprint"] = rest["fingerprint"][:12] + "…"
    text = ", ".join(f"{k}={v}" for k, v in rest.items())
    return f"{reason} ({text})" if reason and text else str(reason or text)


def check_to_json(check: CheckRecord) -> dict[str, Any]:
    return {
        "kind": "check",
        "at": format_time(check.finished_at),
        "server": check.server,
        "id": check.id,
        "actor": check.actor,
        "source": check.source,
        "status": check.status,
        "started_at": format_time(check.started_at),
        "finished_at": format_time(check.finished_at),
        "duration_ms": check.duration_ms,
        "error": None if check.error_kind is None else {"kind": check.error_kind, "message": check.error_message or ""},
        "findings": [
            {"id": f.get("id"), "severity": f.get("severity"), "title": f.get("title"), "fixable": f.get("fixable")}
            for f in check.findings
        ],
        "plan_id": check.plan_id,
        "snapshot_hash": check.snapshot_hash,
    }


def plan_to_json(plan: PlanRecord) -> dict[str, Any]:
    def opt(moment: datetime | None) -> str | None:
        return None if moment is None else format_time(moment)

    return {
        "kind": "plan",
        "at": format_time(plan.created_at),
        "server": plan.server,
        "id": plan.id,
        "check_id": plan.check_id,
        "state": plan.state,
        "requester": plan.requester,
        "approver": plan.approver,
        "source": plan.source,
        "created_at": format_time(plan.created_at),
        "expires_at": format_time(plan.expires_at),
        "decided_at": opt(plan.decided_at),
        "finished_at": opt(plan.finished_at),
        "fingerprint": plan.fingerprint,
        "steps": plan.steps,
        "step_results": plan.step_results,
    }


def entry_to_json(entry: HistoryEntry) -> dict[str, Any]:
    if entry.check is not None:
        return check_to_json(entry.check)
    assert entry.plan is not None
    return plan_to_json(entry.plan)


def audit_to_json(event: AuditRecord) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": format_time(event.at),
        "actor": event.actor,
        "action": event.action,
        "outcome": event.outcome,
        "server": event.server,
        "plan_id": event.plan_id,
        "details": event.details,
    }
