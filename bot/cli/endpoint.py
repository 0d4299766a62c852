"""`sstp-bot endpoint export DIR [--group NAME]`: write the JEA endpoint for admins to install (DESIGN 12).

The files are generated from the scripts this bot ships (`commands.jea`), so the endpoint and the bot
always agree on the functions and the module version. Nothing connects anywhere; docs/jea.md says how
to install what is written.
"""

from __future__ import annotations

import argparse
from typing import Any

from bot.cli import Environment, ExitStatus
from commands.errors import UsageError
from commands.jea import CONFIGURATION_NAME, DEFAULT_GROUP, export_endpoint


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The `endpoint` subcommand and its `export` action (called by `bot.cli.build_parser`)."""
    p = sub.add_parser("endpoint", parents=[common], help="the least-privilege JEA endpoint (docs/jea.md)")
    actions = p.add_subparsers(dest="endpoint_command", metavar="ACTION", parser_class=type(p))
    export = actions.add_parser("export", parents=[common], help="write the JEA module, session configuration and installer")
    export.add_argument("folder", metavar="DIR", help="folder to write into (created if missing)")
    export.add_argument("--group", default=DEFAULT_GROUP, metavar="NAME",
                        help=f"Windows group granted the role: NAME or DOMAIN\\NAME (default: {DEFAULT_GROUP!r})")


def run(args: argparse.Namespace, env: Environment) -> int:
    if args.endpoint_command != "export":
        raise UsageError("endpoint: say what to do: `sstp-bot endpoint export DIR [--group NAME]`")
    try:
        exported = export_endpoint(args.folder, args.group)
    except OSError as exc:
        raise UsageError(f"endpoint export: cannot write to {args.folder}: {exc.strerror or exc}") from None
    print(f"JEA endpoint for sstp-bot written to {exported.folder} (module SstpBot {exported.module_version}, "
          f"role granted to '{exported.group}'):", file=env.stdout)
    for path in exported.files:
        print(f"  {path.relative_to(exported.folder)}", file=env.stdout)
    print(f"Functions: {', '.join(exported.functions)}", file=env.stdout)
    print("Install on each server, as an administrator, from a copy of that folder:", file=env.stdout)
    print("  .\\Install-SstpBotEndpoint.ps1", file=env.stdout)
    print(f'then set configuration_name = "{CONFIGURATION_NAME}" for the server (docs/jea.md).', file=env.stdout)
    return ExitStatus.OK
