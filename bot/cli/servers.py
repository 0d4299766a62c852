"""`sstp-bot servers`: the inventory, as the bot sees it (no secrets)."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from bot.cli import Environment, ExitStatus
from bot.config import load_config


def run(args: argparse.Namespace, env: Environment) -> int:
    config = load_config(args.config, env.environ)
    if not config.servers:
        print(f"No servers in {config.path}.", file=env.stdout)
        return ExitStatus.OK
    table = Table("server", "host", "transport", "auth", "group", "public name", box=None)
    for server in config.servers.values():
        table.add_row(
            server.name,
            f"{server.host}:{server.port}",
            server.transport + ("" if server.verify_tls or server.transport == "http" else " (no TLS check)"),
            server.auth,
            server.group or "",
            server.public_name or "",
        )
    Console(file=env.stdout, width=120).print(table)
    return ExitStatus.OK
