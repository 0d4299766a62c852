"""`sstp-bot db upgrade`, `db prune --older-than DAYS` and `db interrupt --plan ID`: database maintenance."""

from __future__ import annotations

import argparse

from bot.cli import Environment, ExitStatus, require_database_folder
from bot.cli.check import cli_actor
from bot.config import load_config
from commands.errors import PlanStateError, UsageError
from storage import PlanState, Repository, upgrade_database
from storage.engine import display_url
from storage.runner import describe_runner, runner_is_dead

ACTIONS = ("upgrade", "prune", "interrupt")


#: A century: any more is a typo (and past what a date can hold).
MAX_PRUNE_DAYS = 36_500


def run(args: argparse.Namespace, env: Environment) -> int:
    if args.db_command not in ACTIONS:
        raise UsageError("sstp-bot db: choose an action: upgrade, prune --older-than DAYS or interrupt --plan ID")
    if args.db_command == "prune" and not 0 <= args.older_than <= MAX_PRUNE_DAYS:
        raise UsageError(f"sstp-bot db prune: --older-than takes 0 to {MAX_PRUNE_DAYS} days")
    config = load_config(args.config, env.environ)
    url = config.database.url
    if args.db_command == "upgrade":
        result = upgrade_database(url)
        if result.changed:
            before = result.from_revision or "(empty)"
            print(f"Database {display_url(url)}: upgraded from {before} to {result.to_revision}.", file=env.stdout)
        else:
            print(
                f"Database {display_url(url)}: already at the current revision {result.to_revision}.",
                file=env.stdout,
            )
        return ExitStatus.OK
    require_database_folder(url)  # only `db upgrade` creates the database (and its folder)
    with Repository(url, clock=env.clock, auto_upgrade=config.database.auto_upgrade) as repo:
        if args.db_command == "interrupt":
            return _interrupt(repo, args.plan, confirmed=args.yes, env=env)
        dropped = repo.prune_snapshots(args.older_than)
    noun = "body" if dropped == 1 else "bodies"
    print(
        f"Dropped {dropped} snapshot {noun} not referenced by any check of the last {args.older_than} days "
        "(checks, findings, plans and the audit log are kept).",
        file=env.stdout,
    )
    return ExitStatus.OK


def _interrupt(repo: Repository, plan_id: int, *, confirmed: bool, env: Environment) -> int:
    """RUNNING -> INTERRUPTED by hand, for a plan whose runner will not come back.

    Start-up recovery interrupts the plans of dead runners on its own host only; a bot whose host is
    gone for good would otherwise block every later fix of that server (one RUNNING plan per server).
    A runner alive on this host is never interrupted; one this host cannot see needs `--yes`. Like
    every INTERRUPTED plan, it is never re-run: a new check proposes a new plan.
    """
    actor = cli_actor().id
    plan = repo.get_plan(plan_id)
    runner = plan.runner
    if plan.state == PlanState.RUNNING.value and runner:
        dead = runner_is_dead(runner)
        reason = None
        if dead is False:
            reason = f"plan {plan_id} is still running: {describe_runner(runner)} is alive. Nothing was changed."
        elif dead is None and not confirmed:
            reason = (
                f"plan {plan_id} was started by {describe_runner(runner)}, which cannot be seen from here. "
                "If that process is gone for good, run again with --yes. Nothing was changed."
            )
        if reason is not None:
            repo.audit(
                actor=actor, action="interrupt", outcome="refused", server=plan.server, plan_id=plan_id,
                details={"runner": runner, "reason": reason},
            )
            raise PlanStateError(plan_id, plan.state, reason)
    # Any other state is refused (and audited) by the transition itself.
    interrupted = repo.transition(
        plan_id, PlanState.RUNNING, PlanState.INTERRUPTED, actor=actor,
        details={"runner": runner, "why": "marked by an operator: its runner is gone"},
    )
    print(
        f"Plan {plan_id} ({interrupted.server}) is now INTERRUPTED; it will not be re-run. "
        f"The server may be half-fixed: run `sstp-bot check {interrupted.server}`.",
        file=env.stdout,
    )
    return ExitStatus.OK
