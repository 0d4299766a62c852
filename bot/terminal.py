"""Terminal rendering of check results (rich), shared by `check`, `diagnose` and `fix`."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from commands.clientview import client_view_line
from commands.model import CheckResult, Finding, Plan, format_time, sort_findings

SEVERITY_STYLES = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
STATUS_STYLES = {"healthy": "bold green", "unhealthy": "bold red", "error": "bold magenta"}
STATUS_WORDS = {"healthy": "HEALTHY", "unhealthy": "UNHEALTHY", "error": "COULD NOT CHECK"}


def status_line(result: CheckResult) -> Text:
    """`vpn01  UNHEALTHY  3 critical, 1 warning  (checked 2026-11-25T12:00:00Z)`."""
    status = result.status
    line = Text()
    line.append(result.server, style="bold")
    line.append("  ")
    line.append(STATUS_WORDS[status], style=STATUS_STYLES[status])
    if status == "error":
        line.append(f"  {result.error_kind}: {result.error_message or ''}")
    else:
        counts = {s: sum(1 for f in result.findings if f.severity == s) for s in SEVERITY_STYLES}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        line.append(f"  {summary or 'no findings'}")
    line.append(f"  (checked {format_time(result.checked_at)})", style="dim")
    return line


def _item_text(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    if "provider" in item and "id" in item:
        return f"{item['provider']} {item['id']} at {item.get('time', '?')}"
    if "section" in item:
        return f"{item['section']}: {item.get('message', '')}"
    return str(item.get("endpoint") or item.get("thumbprint") or item.get("url") or json.dumps(item, default=str))


def _evidence_text(evidence: dict[str, Any], limit: int = 6) -> str:
    """A compact `key: value` list; nested values as short JSON."""
    lines: list[str] = []
    for key, value in list(evidence.items())[:limit]:
        if value is None or value == [] or value == {}:
            continue
        if isinstance(value, dict):
            shown = value.get("thumbprint") or json.dumps(value, default=str)
        elif isinstance(value, list):
            shown = ", ".join(_item_text(item) for item in value[:5])
        else:
            shown = str(value)
        lines.append(f"{key}: {shown}")
    return "\n".join(lines)


def findings_table(findings: list[Finding]) -> Table:
    table = Table(show_lines=True, expand=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("finding", ratio=3)
    table.add_column("evidence", ratio=2, overflow="fold")
    table.add_column("fix", no_wrap=True)
    for f in sort_findings(findings):
        body = Text()
        body.append(f.title, style="bold")
        body.append(f"\n{f.id}", style="dim")
        body.append(f"\n{f.detail}")
        table.add_row(
            Text(f.severity, style=SEVERITY_STYLES[f.severity]),
            body,
            Text(_evidence_text(f.evidence)),
            Text("plan" if f.fixable else "-", style="green" if f.fixable else "dim"),
        )
    return table


def plan_panel(plan: Plan) -> Panel:
    rows = Table.grid(padding=(0, 1))
    rows.add_column(no_wrap=True)
    rows.add_column()
    for number, step in enumerate(plan.steps, 1):
        marker = Text(f"{number}.", style="bold")
        text = Text()
        if step.disruptive:
            text.append("[disruptive] ", style="bold red")
        text.append(step.description)
        params = ", ".join(f"{k}={v}" for k, v in step.params.items())
        text.append(f"\n{step.action}({params})", style="dim")
        rows.add_row(marker, text)
    footer = Text(f"fingerprint {plan.fingerprint[:16]}", style="dim")
    title = "Plan" + (" (drops connected VPN users)" if plan.disruptive else "")
    return Panel(Group(rows, footer), title=escape(title), title_align="left", border_style="blue")


def render_check(result: CheckResult, console: Console) -> None:
    """Print one check result: status line, findings with evidence, and the plan if there is one."""
    console.print(status_line(result))
    if result.status == "error":
        return
    if (seen := client_view_line(result.snapshot)) is not None:
        console.print(Text(seen), soft_wrap=True)  # DESIGN 11: what clients see, hashes in full
    if result.findings:
        console.print(findings_table(result.findings))
    if result.plan is not None:
        console.print(plan_panel(result.plan))
    elif any(f.severity in ("critical", "warning") for f in result.findings):
        console.print(Text("No automatic fix: see the findings for what to do by hand.", style="yellow"))
