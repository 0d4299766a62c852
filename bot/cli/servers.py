"""`sstp-bot servers [--json]`: the inventory, as the bot sees it (no secrets)."""

from __future__ import annotations

import argparse
import json

from rich.text import Text

from bot.cli import Environment, ExitStatus
from bot.cli.status import latest_checks
from bot.config import load_config
from bot.terminal import make_console, say
from commands.model import format_time


def run(args: argparse.Namespace, env: Environment) -> int:
    if args.json:
        return _json(args, env)
    config = load_config(args.config, env.environ)
    if not config.servers:
        print(f"No servers in {config.path}.", file=env.stdout)
        return ExitStatus.OK
    console = make_console(env.stdout, env.width)
    for server in config.servers.values():
        line = Text(server.name, style="bold")
        line.append(f"  {server.host}:{server.port}  {server.transport}")
        if not server.verify_tls and server.transport != "http":
            line.append(" (no TLS check)", style="yellow")
        line.append(f"  {server.auth}")
        if server.group:
            line.append(f"  group {server.group}")
        if server.public_name:
            line.append(f"  public name {server.public_name}")
        say(console, line, hang=2)
    return ExitStatus.OK


def _json(args: argparse.Namespace, env: Environment) -> int:
    """`[{"name", "host", "group", "public_name", "last_status", "last_checked_at"}]` (DESIGN 7 [2])."""
    config = load_config(args.config, env.environ)
    records, _ = latest_checks(args, env)
    latest = {r.server.lower(): r for r in records}
    docs = []
    for server in config.servers.values():
        record = latest.get(server.name.lower())
        docs.append({
            "name": server.name,
            "host": server.host,
            "group": server.group or None,
            "public_name": server.public_name or None,
            "last_status": record.status if record is not None else None,
            "last_checked_at": format_time(record.finished_at) if record is not None else None,
        })
    print(json.dumps(docs, indent=2), file=env.stdout)
    return ExitStatus.OK
