"""`sstp-bot sweep [--json]`: check every server and report what changed since each one's previous check."""

from __future__ import annotations

import argparse
import contextlib
import json
import textwrap

from bot.cli import Environment, open_service
from bot.cli.check import cli_actor, exit_status
from bot.config import load_config
from bot.operations import SweepReport, sweep
from commands.errors import ConfigError, visible


def run(args: argparse.Namespace, env: Environment) -> int:
    with contextlib.ExitStack() as cleanup:
        config = load_config(args.config, env.environ)
        if not config.servers:
            raise ConfigError("the inventory has no servers")
        service = open_service(config, env)
        cleanup.callback(service.close)
        report = sweep(service, cli_actor())
        if args.json:
            print(json.dumps(report.to_json(), indent=2), file=env.stdout)
        else:
            print(visible(render_text(report, env.width)), file=env.stdout)
        return exit_status(report.results)


def wrap(line: str, width: int) -> list[str]:
    """Lines of at most `width` characters; words (IDs, hashes) are never split."""
    return textwrap.wrap(line, width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False) or [""]


def render_text(report: SweepReport, width: int = 80) -> str:
    """One line per server, then one per change (or that nothing changed)."""
    lines = []
    for result in report.results:
        count = sum(1 for f in result.findings if f.severity in ("critical", "warning"))
        detail = f"{result.error_kind}" if result.status == "error" else f"{count} finding(s)"
        lines.append(f"{result.server}  {result.status}  {detail}")
    healthy = sum(r.status == "healthy" for r in report.results)
    lines.append(f"{healthy} of {len(report.results)} servers healthy.")
    if not report.changes:
        lines.append("No change since the previous checks.")
    for change in report.changes:
        was = change.before or "never checked"
        parts = [f"{change.server}: {was} -> {change.after}"]
        if change.new:
            parts.append("new " + ", ".join(change.new))
        if change.resolved:
            parts.append("resolved " + ", ".join(change.resolved))
        lines.append("; ".join(parts))
    return "\n".join(part for line in lines for part in wrap(line, width))
