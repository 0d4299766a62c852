"""`sstp-bot status [--json]`: the latest result of every server, as `/sstp status` shows it in Slack.

Read from the history only (nothing connects): each server's newest check, then the inventory's
servers that were never checked.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.text import Text

from bot.cli import Environment, ExitStatus, require_database_folder
from bot.config import load_config
from bot.terminal import STATUS_STYLES, STATUS_WORDS, make_console, say
from commands.model import format_time
from storage import CheckRecord, Repository


def latest_checks(args: argparse.Namespace, env: Environment) -> tuple[list[CheckRecord], list[str]]:
    """The newest check of each server with one, and the inventory's names never checked."""
    config = load_config(args.config, env.environ)
    require_database_folder(config.database.url)
    with Repository(config.database.url, clock=env.clock, auto_upgrade=config.database.auto_upgrade) as repo:
        repo.expire_due()  # a plan past plan_ttl_minutes is not offered as open (DESIGN 6)
        records = repo.latest_checks()
    checked = {r.server.lower() for r in records}
    never = [name for name in config.servers if name.lower() not in checked]
    return records, never


def record_to_json(record: CheckRecord) -> dict[str, Any]:
    return {
        "server": record.server,
        "status": record.status,
        "checked_at": format_time(record.finished_at),
        "findings": len(record.findings),
        "plan_id": record.plan_id,
        "error": None if record.error_kind is None else {"kind": record.error_kind,
                                                         "message": record.error_message or ""},
    }


def run(args: argparse.Namespace, env: Environment) -> int:
    records, never = latest_checks(args, env)
    if args.json:
        docs = [record_to_json(r) for r in records]
        docs += [{"server": name, "status": None, "checked_at": None, "findings": None, "plan_id": None,
                  "error": None} for name in never]
        print(json.dumps(docs, indent=2), file=env.stdout)
        return ExitStatus.OK
    console = make_console(env.stdout, env.width)
    if not records and not never:
        say(console, "No servers in the inventory and no checks recorded yet.")
        return ExitStatus.OK
    for r in records:
        line = Text(f"{r.server}  ", style="bold")
        line.append(STATUS_WORDS.get(r.status, r.status.upper()), style=STATUS_STYLES.get(r.status, ""))
        what = f"{r.error_kind}" if r.error_kind else f"{len(r.findings)} finding{'s' if len(r.findings) != 1 else ''}"
        line.append(f"  {what}" + (f", plan #{r.plan_id}" if r.plan_id else ""))
        line.append(f"  (checked {format_time(r.finished_at)})", style="dim")
        say(console, line, hang=2)
    for name in never:
        say(console, Text(f"{name}  never checked", style="dim"), hang=2)
    return ExitStatus.OK
