"""`sstp-bot fix SERVER [--yes] [--json]`: check, show the plan, confirm, run it, re-check.

The local operator is the approver: the plan goes through the same PROPOSED -> APPROVED -> RUNNING
states and audit trail as a Slack approval, with the operator's login as requester and approver.
"""

from __future__ import annotations

import argparse
import contextlib
import json

from rich.console import Console
from rich.markup import escape

from bot.cli import Environment, ExitStatus
from bot.cli.check import cli_actor, exit_status
from bot.config import load_config
from bot.service import FixOutcome, build_service
from bot.terminal import render_check
from commands.errors import ConfigError, PlanStateError, UsageError
from commands.model import CheckResult


def _not_run(server: str, before: CheckResult, plan_id: int | None = None, state: str | None = None) -> str:
    """The fix JSON (DESIGN 7) of a fix that did not run: no steps, no re-check."""
    return json.dumps({"server": server, "plan_id": plan_id, "state": state, "steps": [],
                       "before": before.to_json(), "after": None}, indent=2)


def run(args: argparse.Namespace, env: Environment) -> int:
    with contextlib.ExitStack() as cleanup:
        return _run(args, env, cleanup)


def _run(args: argparse.Namespace, env: Environment, cleanup: contextlib.ExitStack) -> int:
    if not args.yes and not env.interactive:
        # Nobody can answer the confirmation: refuse before anything connects or is recorded.
        raise UsageError("fix: standard input is not a terminal; pass --yes to run the plan without asking")
    try:
        config = load_config(args.config, env.environ)
        server = config.server(args.server)
        service = build_service(config, env.environ, env.clock)
        cleanup.callback(service.close)
    except ConfigError as exc:  # unknown server, bad configuration: nothing connects
        if args.json:
            before = CheckResult(server=args.server, checked_at=env.clock(), error_kind="config", error_message=str(exc))
            print(_not_run(args.server, before), file=env.stdout)
        raise
    console = Console(file=env.stderr if args.json else env.stdout, width=120, soft_wrap=True)
    actor = cli_actor()

    [outcome] = service.check([server], actor)
    before = outcome.result
    if not args.json:
        render_check(before, console)
    if outcome.plan_id is None:
        if args.json:
            print(_not_run(server.name, before), file=env.stdout)
        elif before.status != "error":
            console.print("Nothing to fix automatically." if before.status == "unhealthy" else "Nothing to fix.")
        return exit_status([before])

    plan_id = outcome.plan_id
    if not args.yes:
        # markup=False: rich would take "[y/N]" for a style tag and print nothing of it.
        console.print(f"Run these {len(before.plan.steps) if before.plan else 0} steps on {server.name}? [y/N] ", end="",
                      markup=False)
        answer = env.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            rejected = service.reject(plan_id, actor, authorised=True)
            console.print("Not run. The plan was recorded as rejected.")
            if args.json:
                print(_not_run(server.name, before, plan_id, rejected.state), file=env.stdout)
            return ExitStatus.FINDINGS

    service.approve(plan_id, actor, authorised=True)

    def progress(index: int, total: int, step: dict[str, object]) -> None:
        # Server-derived text is printed as is, never as rich markup ("[fe80::1]:443", "[/]").
        console.print(f"[{index}/{total}] {step.get('description') or step.get('action')}", markup=False)

    def waiting(other: int) -> None:
        console.print(f"Waiting for plan {other}, which another sstp-bot process is running on {server.name}...",
                      markup=False)

    try:
        fix = service.execute(plan_id, actor, progress=progress, waiting=waiting)
    except PlanStateError as exc:  # it could not start: another fix of the server is still running
        if args.json:
            print(_not_run(server.name, before, plan_id, exc.state), file=env.stdout)
        raise
    if args.json:
        payload = fix.to_json()
        payload["before"] = before.to_json()
        print(json.dumps(payload, indent=2), file=env.stdout)
        if fix.error:
            # The JSON keys are fixed by the contract; the reason for a failure goes to stderr.
            print(f"error: {fix.error}", file=env.stderr)
    else:
        _print_outcome(fix, console)
    if fix.after is None:
        return ExitStatus.ERROR
    return ExitStatus.OK if fix.after.status == "healthy" else ExitStatus.FINDINGS


def _print_outcome(fix: FixOutcome, console: Console) -> None:
    for step in fix.steps:
        mark = "[green]ok[/]" if step.ok else "[red]failed[/]"
        console.print(f"  {mark} {escape(step.action)}: {escape(step.detail)}")
    if fix.error:
        console.print(f"[red]{escape(fix.error)}[/]")
    if fix.after is not None:
        console.print("\nRe-check:")
        render_check(fix.after, console)
    console.print(f"Plan {fix.plan.id}: {fix.state}")
