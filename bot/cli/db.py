"""`sstp-bot db upgrade` and `sstp-bot db prune --older-than DAYS`: database maintenance."""

from __future__ import annotations

import argparse

from bot.cli import Environment, ExitStatus
from bot.config import load_config
from commands.errors import UsageError
from storage import Repository, upgrade_database
from storage.engine import display_url


def run(args: argparse.Namespace, env: Environment) -> int:
    if args.db_command not in ("upgrade", "prune"):
        raise UsageError("sstp-bot db: choose an action: upgrade or prune --older-than DAYS")
    if args.db_command == "prune" and args.older_than < 0:
        raise UsageError("sstp-bot db prune: --older-than must be 0 or more days")
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
    with Repository(url, clock=env.clock, auto_upgrade=config.database.auto_upgrade) as repo:
        dropped = repo.prune_snapshots(args.older_than)
    noun = "body" if dropped == 1 else "bodies"
    print(
        f"Dropped {dropped} snapshot {noun} not referenced by any check of the last {args.older_than} days "
        "(checks, findings, plans and the audit log are kept).",
        file=env.stdout,
    )
    return ExitStatus.OK
