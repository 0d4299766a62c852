"""`sstp-bot check SERVER... | --all | --group G [--json]`."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json

from rich.console import Console

from bot.cli import Environment, ExitStatus
from bot.config import load_config
from bot.service import Actor, CheckOutcome, build_service, resolve_targets
from bot.terminal import render_check
from commands.errors import ConfigError, UnknownServer, UsageError
from commands.model import CheckResult


def cli_actor() -> Actor:
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = "unknown"
    return Actor(id=f"cli:{login}", source="cli")


def exit_status(results: list[CheckResult]) -> ExitStatus:
    """2 when any server could not be checked, else 1 when any has findings, else 0."""
    if any(r.status == "error" for r in results):
        return ExitStatus.ERROR
    if any(r.status == "unhealthy" for r in results):
        return ExitStatus.FINDINGS
    return ExitStatus.OK


def run(args: argparse.Namespace, env: Environment) -> int:
    with contextlib.ExitStack() as cleanup:
        return _run(args, env, cleanup)


def _run(args: argparse.Namespace, env: Environment, cleanup: contextlib.ExitStack) -> int:
    if not (args.servers or args.all or args.group):
        raise UsageError("check: name at least one SERVER, or use --all or --group G")
    if args.all and (args.servers or args.group):
        raise UsageError("check: --all cannot be combined with server names or --group")
    fleet = bool(args.all or args.group or len(args.servers) > 1)
    try:
        config = load_config(args.config, env.environ)
        # Resolve every name before anything connects: one unknown name refuses the whole command.
        targets = resolve_targets(config, args.servers, all_servers=args.all, group=args.group)
        service = build_service(config, env.environ, env.clock)  # a bad database.url is a config error too
        cleanup.callback(service.close)
    except ConfigError as exc:
        if args.json:
            names = args.servers or [args.group or "all"]
            unknown = exc.name if isinstance(exc, UnknownServer) else None
            reason = str(exc)

            def message(name: str) -> str:
                if unknown is None or name == unknown:
                    return reason
                return f"not checked: the request also names {unknown!r}, which is not in the inventory"

            docs = [
                CheckResult(server=name, checked_at=env.clock(), error_kind="config", error_message=message(name)).to_json()
                for name in names
            ]
            print(json.dumps(docs if fleet else docs[0], indent=2), file=env.stdout)
        raise
    console = Console(file=env.stdout, width=120, soft_wrap=True)

    def show(outcome: CheckOutcome) -> None:
        if not args.json:
            render_check(outcome.result, console)

    outcomes = service.check(targets, cli_actor(), on_result=show)
    results = [o.result for o in outcomes]
    if args.json:
        payload = [r.to_json() for r in results] if fleet else results[0].to_json()
        print(json.dumps(payload, indent=2), file=env.stdout)
    elif len(results) > 1:
        healthy = sum(r.status == "healthy" for r in results)
        console.print(f"\n{healthy} of {len(results)} servers healthy.")
    return exit_status(results)
