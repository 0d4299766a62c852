"""`sstp-bot fix SERVER [--yes] [--json]`: check, show the plan, confirm, run it, re-check.

The local operator is the approver: the plan goes through the same PROPOSED -> APPROVED -> RUNNING
states and audit trail as a Slack approval, with the operator's login as requester and approver.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from typing import Any

from rich.console import Console
from rich.text import Text

from bot.cli import Environment, ExitStatus, error_kind, open_service
from bot.cli.check import cli_actor, exit_status
from bot.config import load_config
from bot.service import Actor, FixOutcome, Service, StepResult
from bot.terminal import make_console, render_check, say, terminal_width
from commands.errors import PlanStateError, UsageError
from commands.model import CheckResult


def _not_run(server: str, before: CheckResult, plan_id: int | None = None, state: str | None = None) -> str:
    """The fix JSON (DESIGN 7) of a fix that did not run: no steps, no re-check."""
    return json.dumps({"server": server, "plan_id": plan_id, "state": state, "steps": [],
                       "before": before.to_json(), "after": None}, indent=2)


def json_error(args: argparse.Namespace, exc: BaseException, message: str, env: Environment) -> Any:
    """The fix JSON of a fix that could not start (unknown server, bad configuration)."""
    before = CheckResult(server=args.server, checked_at=env.clock(), error_kind=error_kind(exc) or "config",
                         error_message=message)
    return json.loads(_not_run(args.server, before))


def run(args: argparse.Namespace, env: Environment) -> int:
    with contextlib.ExitStack() as cleanup:
        return _run(args, env, cleanup)


def _run(args: argparse.Namespace, env: Environment, cleanup: contextlib.ExitStack) -> int:
    if not args.yes and not env.interactive:
        # Nobody can answer the confirmation: refuse before anything connects or is recorded.
        raise UsageError("fix: standard input is not a terminal; pass --yes to run the plan without asking")
    config = load_config(args.config, env.environ)
    server = config.server(args.server)  # unknown server, bad configuration: nothing connects
    service = open_service(config, env)
    cleanup.callback(service.close)
    console = make_console(env.stderr if args.json else env.stdout, terminal_width(env.environ, env.stdout))
    actor = cli_actor()

    [outcome] = service.check([server], actor)
    before = outcome.result
    if not args.json:
        render_check(before, console)
    if outcome.plan_id is None:
        if args.json:
            print(_not_run(server.name, before), file=env.stdout)
        elif before.status == "healthy":
            # An unhealthy report already said that there is no automatic fix: one message, not two.
            say(console, "Nothing to fix.")
        return exit_status([before])

    plan_id = outcome.plan_id
    total = len(before.plan.steps) if before.plan else 0
    if not args.yes:
        say(console, f"Run these {total} steps on {server.name}? [y/N]", end=" ")
        try:
            answer = env.stdin.readline().strip().lower()
        except KeyboardInterrupt:
            answer = ""  # Ctrl-C at the prompt is a "no", and recorded as one
            interrupted = True
        else:
            interrupted = False
        if answer not in ("y", "yes"):
            rejected = service.reject(plan_id, actor, authorised=True)
            say(console, "Not run. The plan was recorded as rejected.")
            if args.json:
                print(_not_run(server.name, before, plan_id, rejected.state), file=env.stdout)
            return ExitStatus.INTERRUPTED if interrupted else ExitStatus.FINDINGS

    service.approve(plan_id, actor, authorised=True)
    steps = StepReport(service, plan_id, console)

    def waiting(other: int) -> None:
        say(console, f"Waiting for plan {other}, which another sstp-bot process is running on {server.name}...")

    try:
        fix = service.execute(plan_id, actor, progress=steps.starting, waiting=waiting, step_done=steps.ended)
    except PlanStateError as exc:  # it could not start: another fix of the server is still running
        if args.json:
            print(_not_run(server.name, before, plan_id, exc.state), file=env.stdout)
        raise
    except KeyboardInterrupt:
        steps.interrupted(server.name, actor)
        return ExitStatus.INTERRUPTED
    steps.catch_up(fix.steps)
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


class StepReport:
    """Prints each step as it starts and its result as soon as it is recorded (flushed, so the record on the
    screen survives a killed process), and knows which step was running when Ctrl-C came."""

    def __init__(self, service: Service, plan_id: int, console: Console) -> None:
        self.service = service
        self.plan_id = plan_id
        self.console = console
        self.current: tuple[int, int, dict[str, Any]] | None = None
        self.printed = 0

    def starting(self, index: int, total: int, step: dict[str, Any]) -> None:
        # The previous step has ended and its result is recorded: show it before the next one starts.
        self.catch_up(None)
        self.current = (index, total, step)
        say(self.console, f"[{index}/{total}] {step.get('description') or step.get('action')}", hang=4)

    def ended(self, result: StepResult) -> None:
        """A step's result, printed (and flushed) the moment the service has recorded it."""
        self._print(result.to_json())

    def _print(self, result: dict[str, Any]) -> None:
        mark = Text("  ok  ", style="green") if result.get("ok") else Text("  FAILED  ", style="bold red")
        mark.append(f"{result.get('action')}: {result.get('detail') or ''}")
        say(self.console, mark, hang=4)
        self.printed += 1

    def catch_up(self, results: list[StepResult] | None) -> None:
        """Print the results not printed yet: from the plan's record, or the outcome's own list."""
        recorded: list[dict[str, Any]] = (
            [r.to_json() for r in results] if results is not None else list(self.service.get_plan(self.plan_id).step_results)
        )
        for result in recorded[self.printed:]:
            self._print(result)

    def interrupted(self, server: str, actor: Actor) -> None:
        """Ctrl-C during the fix: say where it stopped, record it in the plan's audit trail, suggest check."""
        with contextlib.suppress(Exception):
            self.catch_up(None)
        if self.current is None:
            where = "before its first step"
            details: dict[str, Any] = {"step": None}
        else:
            index, total, step = self.current
            ended = self.printed >= index
            action = str(step.get("action"))
            where = (f"after step {index} of {total} ({action}) ended" if ended
                     else f"during step {index} of {total} ({action})")
            details = {"step": index, "of": total, "action": action, "step_finished": ended}
        message = (f"Interrupted {where}: {server} may be partly changed. "
                   f"Run `sstp-bot check {server}` to see where it stands.")
        details["reason"] = message
        with contextlib.suppress(Exception):  # the record must not hide the message
            self.service.audit(actor=actor.id, action="fix", outcome="interrupted", server=server,
                               plan_id=self.plan_id, details=details)
        say(self.console, Text(message, style="bold red"))


def _print_outcome(fix: FixOutcome, console: Console) -> None:
    if fix.error:
        say(console, Text(fix.error, style="red"))
    if fix.after is not None:
        console.print()
        say(console, "Re-check:")
        render_check(fix.after, console)
    total = len(fix.plan.steps)
    ok = sum(1 for s in fix.steps if s.ok)
    say(console, f"Plan {fix.plan.id}: {fix.state} ({ok} of {total} steps ok)")
