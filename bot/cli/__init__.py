"""The `sstp-bot` command line.

The parser for every subcommand lives here, so the flags of DESIGN section 7 are in one place; each
subcommand's work lives in its own module (`bot.cli.<name>.run(args, env) -> int`). `main` is the one
edge where every error family becomes an exit code and a message.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import IO, Any, NoReturn

from commands.errors import SstpBotError, UsageError


class ExitStatus(IntEnum):
    OK = 0  # healthy / done
    FINDINGS = 1  # the server has findings (or the fix left it unhealthy)
    ERROR = 2  # could not check / could not run
    USAGE = 3  # malformed command line


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Environment:
    """What a command may touch of the outside world; tests pass their own."""

    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    stdin: IO[str] = field(default_factory=lambda: sys.stdin)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    clock: Callable[[], datetime] = utc_now

    @property
    def interactive(self) -> bool:
        try:
            return self.stdin.isatty()
        except (AttributeError, ValueError):
            return False


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage; our contract says 3, and tests need no SystemExit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sstp-bot",
        description="Find and fix SSTP certificate binding errors on Windows RRAS servers.",
    )
    parser.add_argument("--config", metavar="PATH", help="configuration file (default: $SSTP_BOT_CONFIG or ./sstp-bot.toml)")
    # `--config` is accepted after the subcommand too (`sstp-bot check --all --config lab.toml`).
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("check", parents=[common], help="probe servers and report findings")
    p.add_argument("servers", nargs="*", metavar="SERVER")
    p.add_argument("--all", action="store_true", help="every server of the inventory")
    p.add_argument("--group", metavar="G", help="every server of group G")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("diagnose", parents=[common], help="analyse a snapshot file offline")
    p.add_argument("--snapshot", required=True, metavar="FILE", help="snapshot v1 JSON ('-' for stdin)")
    p.add_argument("--server-name", metavar="N", help="server name to report (default: the snapshot's computer name)")
    p.add_argument("--public-name", metavar="NAME", help="public VPN name clients dial (checks the certificate names)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("fix", parents=[common], help="check a server, show the plan, run it after confirmation, re-check")
    p.add_argument("server", metavar="SERVER")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("history", parents=[common], help="past checks, plans and their outcomes")
    p.add_argument("server", nargs="?", metavar="SERVER")
    p.add_argument("--limit", type=int, default=20, metavar="N")
    p.add_argument("--plan", type=int, metavar="ID", help="the full audit trail of one plan")
    p.add_argument("--json", action="store_true")

    sub.add_parser("servers", parents=[common], help="list the inventory")
    sub.add_parser("serve", parents=[common], help="run the Slack bot")

    p = sub.add_parser("db", parents=[common], help="database maintenance")
    db_sub = p.add_subparsers(dest="db_command", metavar="ACTION", parser_class=_Parser)
    db_sub.add_parser("upgrade", parents=[common], help="apply database migrations")
    prune = db_sub.add_parser("prune", parents=[common], help="drop old snapshot bodies (findings and audit are kept)")
    prune.add_argument("--older-than", type=int, required=True, metavar="DAYS")
    stuck = db_sub.add_parser(
        "interrupt", parents=[common], help="mark a RUNNING plan whose bot is gone for good INTERRUPTED"
    )
    stuck.add_argument("--plan", type=int, required=True, metavar="ID")
    stuck.add_argument("--yes", action="store_true", help="its runner is on another host: confirm that it is gone")

    p = sub.add_parser("lab", parents=[common], help="run emulated RRAS servers on 127.0.0.1 until interrupted")
    p.add_argument("--scenario", action="extend", nargs="+", metavar="NAME",
                   help="scenarios to run (`--scenario a b` or repeated; default: a small fleet)")
    p.add_argument("--write-config", metavar="PATH", help="write an inventory pointing at the lab servers")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--jea", action="store_true", help="serve every server through the JEA endpoint SstpBot only")

    sub.add_parser("demo", parents=[common], help="the whole story against the lab, non-interactively")
    importlib.import_module("bot.cli.endpoint").add_parser(sub, common)
    return parser


# Subcommand -> module implementing `run(args, env) -> int`.
_HANDLERS = {
    "check": "bot.cli.check",
    "diagnose": "bot.cli.diagnose",
    "fix": "bot.cli.fix",
    "history": "bot.cli.history",
    "servers": "bot.cli.servers",
    "serve": "bot.cli.serve",
    "db": "bot.cli.db",
    "lab": "bot.cli.lab",
    "demo": "bot.cli.demo",
    "endpoint": "bot.cli.endpoint",
}


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    """Run one command; every error family becomes an exit status and a one-line message here."""
    env = env or Environment()
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        if not args.command:
            parser.print_help(env.stdout)
            return ExitStatus.USAGE
        module: Any = importlib.import_module(_HANDLERS[args.command])
        return int(module.run(args, env))
    except UsageError as exc:
        print(f"usage error: {exc}", file=env.stderr)
        return ExitStatus.USAGE
    except SstpBotError as exc:  # configuration, remote, snapshot, plan state: one line, exit 2
        print(f"error: {exc}", file=env.stderr)
        return ExitStatus.ERROR
    except KeyboardInterrupt:
        print("interrupted", file=env.stderr)
        return 130
    except BrokenPipeError:
        # `sstp-bot check --all --json | head`: the reader left. Silence the flush at exit, like a shell.
        if env.stdout is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13
    except Exception as exc:  # the edge: nothing escapes as a traceback or as exit code 1 ("findings")
        logging.getLogger("sstp_bot").debug("unexpected error", exc_info=True)
        # Credentials in URLs (a database URL, say) are masked before anything is printed.
        message = re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", str(exc))
        print(f"error: unexpected {type(exc).__name__}: {message}", file=env.stderr)
        return ExitStatus.ERROR
