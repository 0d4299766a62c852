"""Terminal rendering shared by the CLI commands (rich), sized to the terminal (DESIGN 7 [2]).

Every line is at most the terminal's width: `COLUMNS`, else the width of the terminal, else 80 when
the output is not a terminal. The wrapping is done here, not by rich, because a hash or thumbprint
must never be split across lines (a copied hash would be wrong): one longer than the line stands whole
on a line of its own, the only line that may exceed the width.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import IO, Any

from rich.console import Console
from rich.text import Text

from commands.clientview import client_view_line
from commands.errors import visible
from commands.model import CheckResult, Finding, Plan, format_time, sort_findings

SEVERITY_STYLES = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
STATUS_STYLES = {"healthy": "bold green", "unhealthy": "bold red", "error": "bold magenta"}
STATUS_WORDS = {"healthy": "HEALTHY", "unhealthy": "UNHEALTHY", "error": "COULD NOT CHECK"}

#: Width when the output is not a terminal and COLUMNS is unset.
DEFAULT_WIDTH = 80
#: Below this, indented text cannot be laid out sensibly; narrower COLUMNS values are raised to it.
MIN_WIDTH = 20

#: A certificate thumbprint (SHA-1, 40 hex) or a SHA-256 hash (64 hex), not part of a longer hex run.
HASH_RE = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{64}|[0-9A-Fa-f]{40})(?![0-9A-Fa-f])")
_WORD_RE = re.compile(r"\S+")


def terminal_width(environ: Mapping[str, str], stream: IO[str] | None = None) -> int:
    """`COLUMNS` when set to a number, else the terminal's width, else 80 (output piped or captured)."""
    raw = environ.get("COLUMNS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return max(int(raw), MIN_WIDTH)
    try:
        if stream is not None and stream.isatty():
            columns = os.get_terminal_size(stream.fileno()).columns
            if columns > 0:  # a terminal whose size was never set says 0: that is "unknown"
                return max(columns, MIN_WIDTH)
    except (AttributeError, OSError, ValueError):
        pass
    return DEFAULT_WIDTH


class _Console(Console):
    """rich exits with status 1 when the reader of its output leaves; 1 means "findings" here. The
    CLI's edge turns the BrokenPipeError into 141, as a shell reports SIGPIPE."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def make_console(file: IO[str], width: int) -> Console:
    """A console of the given width; colours only when `file` is a terminal (rich decides)."""
    return _Console(file=file, width=width, highlight=False, soft_wrap=False)


def _line_spans(text: str, first: int, rest: int) -> list[tuple[int, int]]:
    """Where to cut one paragraph: word-wrapped to `first` then `rest` columns. A word longer than a
    line is cut, but never inside a hash; a hash longer than the line gets a line of its own."""
    spans: list[tuple[int, int]] = []
    start = end = -1

    def room() -> int:
        return max(first if not spans else rest, 1)

    for match in _WORD_RE.finditer(text):
        ws, we = match.span()
        if start >= 0:
            if we - start <= room():
                end = we
                continue
            spans.append((start, end))
            start = -1
        while we - ws > room():
            cut = ws + room()
            for hash_match in HASH_RE.finditer(text, ws, we):
                if hash_match.start() < cut < hash_match.end():
                    cut = hash_match.start() if hash_match.start() > ws else hash_match.end()
                    break
            spans.append((ws, cut))
            ws = cut
        if ws < we:
            start, end = ws, we
    if start >= 0:
        spans.append((start, end))
    return spans or [(0, 0)]


def wrap(text: Text | str, width: int, *, indent: int = 0, hang: int | None = None) -> list[Text]:
    """`text` as lines of at most `width` columns (styles kept): the first line indented by `indent`,
    the following ones by `hang` (default: `indent`). Newlines in `text` start new paragraphs."""
    body = Text(text) if isinstance(text, str) else text.copy()
    body.plain = visible(body.plain)  # everything printed goes through here
    hang = indent if hang is None else hang
    lines: list[Text] = []
    for paragraph in body.split("\n", allow_blank=True):
        plain = paragraph.plain
        lead = len(plain) - len(plain.lstrip(" "))  # the paragraph's own indentation, kept on its first line
        for number, (a, b) in enumerate(_line_spans(plain, width - indent - lead, width - hang)):
            margin = indent + lead if number == 0 else hang
            # A hash too long for the line starts at the left edge: it exceeds the width by no more
            # than it must.
            line = Text(" " * margin if margin + b - a <= width else "")
            line.append_text(paragraph[a:b])
            lines.append(line)
    return lines


def say(
    console: Console, text: Text | str, *, indent: int = 0, hang: int | None = None, style: str = "", end: str = "\n"
) -> None:
    """Print `text` wrapped to the console's width (rich must not re-wrap or crop a long hash line);
    `end=""` leaves the cursor after the last line (a prompt)."""
    body = Text(text, style=style) if isinstance(text, str) else text
    lines = wrap(body, console.width, indent=indent, hang=hang)
    for number, line in enumerate(lines, 1):
        console.print(line, soft_wrap=True, end=end if number == len(lines) else "\n")
    flush(console)


def flush(console: Console) -> None:
    """Push what was printed to the file now: a step's result must survive a killed process."""
    try:
        console.file.flush()
    except BrokenPipeError:
        raise  # the reader left: the CLI's edge ends the command with 141
    except (OSError, ValueError):
        pass  # a closed or unflushable stream must not fail the command


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
        line.append(f"  {finding_summary(result.findings)}")
    line.append(f"  (checked {format_time(result.checked_at)})", style="dim")
    return line


def finding_summary(findings: Iterable[Finding]) -> str:
    """`3 critical, 1 warning` or `no findings`."""
    listed = list(findings)
    counts = {s: sum(1 for f in listed if f.severity == s) for s in SEVERITY_STYLES}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no findings"


def _item_text(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    if "provider" in item and "id" in item:
        return f"{item['provider']} {item['id']} at {item.get('time', '?')}"
    if "section" in item:
        return f"{item['section']}: {item.get('message', '')}"
    return str(item.get("endpoint") or item.get("thumbprint") or item.get("url") or json.dumps(item, default=str))


def evidence_lines(evidence: dict[str, Any], limit: int = 6) -> list[str]:
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
    return lines


def render_findings(findings: list[Finding], console: Console) -> None:
    """One block per finding: severity and ID, title, detail, evidence."""
    for f in sort_findings(findings):
        head = Text("  ")
        head.append(f.severity.upper(), style=SEVERITY_STYLES[f.severity])
        head.append(f"  {f.id}", style="dim")
        if f.fixable:
            head.append("  (the plan fixes it)", style="green")
        say(console, head, hang=4)
        say(console, Text(f.title, style="bold"), indent=4)
        if f.detail:
            say(console, f.detail, indent=4)
        for line in evidence_lines(f.evidence):
            say(console, Text(line, style="dim"), indent=6, hang=8)


def plan_title(plan: Plan, vpn_users: int | None) -> str:
    """`Plan`, or what its disruptive steps do to connected VPN users when some (or perhaps some) are."""
    if not plan.disruptive or vpn_users == 0:
        return "Plan"
    if vpn_users is None:
        return "Plan (may drop connected VPN users)"
    return f"Plan (drops the {vpn_users} connected VPN user{'s' if vpn_users != 1 else ''})"


def render_plan(plan: Plan, console: Console, vpn_users: int | None = None) -> None:
    """The numbered steps, disruptive ones flagged, with the action each runs."""
    say(console, Text(plan_title(plan, vpn_users), style="bold blue"))
    for number, step in enumerate(plan.steps, 1):
        marker = f"  {number}. "
        text = Text(marker, style="bold")
        if step.disruptive:
            text.append("[disruptive] ", style="bold red")
        text.append(step.description)
        say(console, text, hang=len(marker))
        params = ", ".join(f"{k}={v}" for k, v in step.params.items())
        say(console, Text(f"{step.action}({params})", style="dim"), indent=len(marker), hang=len(marker) + 2)
    say(console, Text(f"fingerprint {plan.fingerprint[:16]}", style="dim"), indent=2)


def render_check(result: CheckResult, console: Console) -> None:
    """Print one check result: status line, findings with evidence, and the plan if there is one."""
    say(console, status_line(result), hang=2)
    if result.status == "error":
        return
    if (seen := client_view_line(result.snapshot)) is not None:
        say(console, seen, hang=2)  # DESIGN 11: what clients see; hashes whole, wrapped to the width
    if result.findings:
        render_findings(result.findings, console)
    if result.plan is not None:
        render_plan(result.plan, console, result.vpn_connections)
    elif any(f.severity in ("critical", "warning") for f in result.findings):
        say(console, Text("No automatic fix: see the findings for what to do by hand.", style="yellow"))


def render_summary(results: list[CheckResult], console: Console) -> None:
    """The fleet table: one line per server (name, status, finding count), then the totals."""
    if not results:
        return
    name_width = min(max(len(r.server) for r in results), max(console.width // 3, 8))
    say(console, Text(f"{'server':<{name_width}}  {'status':<15}  findings", style="bold"))
    for r in results:
        count = f"{r.error_kind}" if r.status == "error" else str(len(r.findings))
        line = Text(f"{r.server:<{name_width}}  ")
        line.append(f"{STATUS_WORDS[r.status]:<15}", style=STATUS_STYLES[r.status])
        line.append(f"  {count}")
        say(console, line, hang=name_width + 2)
    healthy = sum(r.status == "healthy" for r in results)
    say(console, f"{healthy} of {len(results)} servers healthy.")
