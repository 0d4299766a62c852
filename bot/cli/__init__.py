"""The `sstp-bot` command line.

The parser for every subcommand lives here, so the flags of DESIGN section 7 are in one place; each
subcommand's work lives in its own module (`bot.cli.<name>.run(args, env) -> int`). `main` is the one
edge where every error family becomes an exit code and a message.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from bot import __version__
from commands.errors import (
    ConfigError,
    RemoteError,
    SnapshotError,
    SstpBotError,
    UnknownServer,
    UsageError,
    visible,
)

if TYPE_CHECKING:
    from bot.config import Config
    from bot.service import Service


class ExitStatus(IntEnum):
    """Every exit status of `sstp-bot` (DESIGN 7); 130 and 141 are what a shell reports for SIGINT/SIGPIPE."""

    OK = 0  # healthy / done
    FINDINGS = 1  # the server has findings (or the fix left it unhealthy, or was declined)
    ERROR = 2  # could not check / could not run / configuration error
    USAGE = 3  # malformed command line
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
    BROKEN_PIPE = 141  # the reader of stdout left (128 + SIGPIPE): `sstp-bot history | head`


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

    @property
    def width(self) -> int:
        """Columns of text output: `COLUMNS`, else the terminal's width, else 80 (DESIGN 7 [2])."""
        from bot.terminal import terminal_width

        return terminal_width(self.environ, self.stdout)

    @property
    def stderr_is_terminal(self) -> bool:
        """Progress lines are for a person watching, never for a log file or a pipe."""
        try:
            return self.stderr.isatty()
        except (AttributeError, ValueError):
            return False


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """` Did you mean 'check'?` for a near miss (difflib), else ``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    return f" Did you mean {close[0]!r}?" if close else ""


def require_database_folder(url: str) -> None:
    """A SQLite database whose folder does not exist is a configuration error, and nothing is created:
    a typo in `database.url` must not start an empty history somewhere else. `db upgrade` creates it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # the storage layer names the bad URL
    if parsed.get_backend_name() != "sqlite":
        return
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    folder = Path(database).expanduser().parent
    if not folder.exists():
        raise ConfigError(
            f"database.url: the folder {folder} of the SQLite database does not exist "
            "(create it, or run `sstp-bot db upgrade` to create the database there)"
        )


def open_service(config: Config, env: Environment) -> Service:
    """The use case for a CLI command: the database folder checked first (`require_database_folder`),
    then the production wiring. Every command that reads or writes the history opens it here."""
    from bot.service import build_service  # the use-case layer; imported here so the CLI starts fast

    require_database_folder(config.database.url)
    return build_service(config, env.environ, env.clock)


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage; our contract says 3, and tests need no SystemExit."""

    def error(self, message: str) -> NoReturn:
        wrong = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if wrong:
            choices = re.findall(r"'([^']*)'", wrong.group(2))
            message += did_you_mean(wrong.group(1), choices)
        raise UsageError(f"{self.prog}: {message}")


EXIT_CODES_HELP = """exit status:
  0    done; every server checked is healthy
  1    findings: a server is not healthy (or a fix left it so, or was declined)
  2    error: could not check or run, or a configuration error
  3    usage error: a malformed command line
  130  interrupted (Ctrl-C)
  141  the reader of the output went away (broken pipe)"""

#: The commands that do not judge servers (no "findings" status): their exit codes.
PLAIN_EXIT_CODES_HELP = """exit status:
  0    done
  2    error: refused, or a configuration error
  3    usage error: a malformed command line
  130  interrupted (Ctrl-C)
  141  the reader of the output went away (broken pipe)"""
_JUDGING = {"main", "check", "diagnose", "fix", "sweep"}

_EXAMPLES = {
    "main": """examples:
  sstp-bot check vpn01                 check one server
  sstp-bot check --all                 the whole inventory, ends with one line per server
  sstp-bot fix vpn01                   show the plan, ask, run it, re-check
  sstp-bot status                      the latest result of every server
  sstp-bot history vpn01 --limit 5     past checks and plans""",
    "check": """examples:
  sstp-bot check vpn01 vpn02
  sstp-bot check --group emea --json
  sstp-bot check --all --save-snapshot snapshots/""",
    "diagnose": """examples:
  sstp-bot diagnose --snapshot snapshots/vpn01.json
  sstp-bot diagnose --snapshot - --public-name vpn.example.com < vpn01.json""",
    "fix": """examples:
  sstp-bot fix vpn01
  sstp-bot fix vpn01 --yes --json""",
    "history": """examples:
  sstp-bot history
  sstp-bot history vpn01 --limit 5
  sstp-bot history --plan 12""",
    "status": """examples:
  sstp-bot status
  sstp-bot status --json""",
    "servers": """examples:
  sstp-bot servers
  sstp-bot servers --json""",
    "serve": """examples:
  SLACK_BOT_TOKEN=xoxb-... SLACK_APP_TOKEN=xapp-... sstp-bot serve""",
    "db": """examples:
  sstp-bot db upgrade
  sstp-bot db prune --older-than 90
  sstp-bot db interrupt --plan 12""",
    "lab": """examples:
  sstp-bot lab
  sstp-bot lab --scenario iis-binding remoteaccess-stopped --write-config lab.toml
  sstp-bot lab --list""",
    "demo": """examples:
  sstp-bot demo""",
    "sweep": """examples:
  sstp-bot sweep
  sstp-bot sweep --json""",
    "forecast": """examples:
  sstp-bot forecast --days 60
  sstp-bot forecast --json
  sstp-bot forecast --png expiry.png""",
    "endpoint": """examples:
  sstp-bot endpoint export jea/
  sstp-bot endpoint export jea/ --group 'CORP\\VPN Operators'""",
}


def _help(name: str) -> dict[str, Any]:
    """Keyword arguments of a parser with examples and the exit codes after its options. `name` is the
    command (`db`, or `db prune` for an action, which shows its command's examples)."""
    command = name.split()[0]
    examples = _EXAMPLES.get(name) or _EXAMPLES.get(command)
    codes = EXIT_CODES_HELP if command in _JUDGING else PLAIN_EXIT_CODES_HELP
    return {"epilog": (examples + "\n\n" if examples else "") + codes,
            "formatter_class": argparse.RawDescriptionHelpFormatter}


def with_help_texts(parser: argparse.ArgumentParser, prefix: str = "") -> argparse.ArgumentParser:
    """Every command's and action's `--help` ends with its examples (`_EXAMPLES`) and its exit codes; a
    command added to `build_parser` gets the exit codes without further ado."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                qualified = f"{prefix} {name}".strip()
                for key, value in _help(qualified).items():
                    setattr(command, key, value)
                with_help_texts(command, qualified)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sstp-bot",
        description="Find and fix SSTP certificate binding errors on Windows RRAS servers.",
        **_help("main"),
    )
    parser.add_argument("--version", action="version", version=f"sstp-bot {__version__}")
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
    p.add_argument("--save-snapshot", metavar="DIR",
                   help="also write each server's snapshot to DIR/NAME.json (for `diagnose --snapshot`)")

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

    p = sub.add_parser("status", parents=[common], help="the latest result of every server (like /sstp status)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("servers", parents=[common], help="list the inventory")
    p.add_argument("--json", action="store_true", help="with each server's last status")
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

    p = sub.add_parser("sweep", parents=[common], help="check every server and report what changed")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("forecast", parents=[common], help="SSTP certificate expiry of every server")
    p.add_argument("--json", action="store_true")
    p.add_argument("--png", metavar="FILE", help="also draw the expiry timeline as a PNG")
    p.add_argument("--days", type=int, metavar="N", help="only certificates expiring within N days")
    importlib.import_module("bot.cli.endpoint").add_parser(sub, common)
    return parser


# Subcommand -> module implementing `run(args, env) -> int`. A module may also define
# `json_error(args, exc, message, env) -> Any | None`: the `--json` document of a command that failed
# (default: `{"error": {"kind", "message"}}`). New commands: add a line here and a parser above.
_HANDLERS = {
    "check": "bot.cli.check",
    "diagnose": "bot.cli.diagnose",
    "fix": "bot.cli.fix",
    "history": "bot.cli.history",
    "status": "bot.cli.status",
    "servers": "bot.cli.servers",
    "serve": "bot.cli.serve",
    "db": "bot.cli.db",
    "lab": "bot.cli.lab",
    "demo": "bot.cli.demo",
    "sweep": "bot.cli.sweep",
    "forecast": "bot.cli.forecast",
    "endpoint": "bot.cli.endpoint",
}


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    """Run one command; every failure goes through `fail`, the one edge."""
    env = env or Environment()
    parser = with_help_texts(build_parser())
    args: argparse.Namespace | None = None
    module: Any = None
    try:
        try:
            # argparse prints --help and --version itself, then exits 0.
            with contextlib.redirect_stdout(env.stdout):
                args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        except SystemExit as exc:
            return int(exc.code or 0) if isinstance(exc.code, int | None) else ExitStatus.USAGE
        if not args.command:
            parser.print_help(env.stdout)
            return ExitStatus.USAGE
        module = importlib.import_module(_HANDLERS[args.command])
        return int(module.run(args, env))
    except BaseException as exc:  # the edge: nothing escapes as a traceback or as exit code 1 ("findings")
        if isinstance(exc, SystemExit | GeneratorExit):
            raise
        return fail(exc, env, args, module)


def error_kind(exc: BaseException) -> str | None:
    """The DESIGN 7 error kind of an exception, or None when it has none (usage, plan state, a bug)."""
    if isinstance(exc, ConfigError):
        return "config"
    if isinstance(exc, RemoteError):
        return str(getattr(exc, "kind", None) or "unreachable")
    if isinstance(exc, SnapshotError):
        return "bad_output"
    return None


def describe(exc: BaseException) -> str:
    """The one-line message of an error; a near miss of a server name gets a suggestion, and a password
    in a URL (a database URL, say) is masked."""
    message = str(exc)
    if isinstance(exc, UnknownServer) and exc.known:
        message += did_you_mean(exc.name, exc.known)
    if not isinstance(exc, SstpBotError):
        message = f"unexpected {type(exc).__name__}: {message}"
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", message)


def fail(exc: BaseException, env: Environment, args: argparse.Namespace | None = None, module: Any = None) -> int:
    """The CLI's one edge: an exception becomes an exit status, a line on stderr and, for a command run
    with `--json` that failed with an error kind, the JSON error document on stdout."""
    if isinstance(exc, KeyboardInterrupt):
        print("interrupted", file=env.stderr)
        return ExitStatus.INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        # `sstp-bot check --all --json | head`: the reader left. Silence the flush at exit, like a shell.
        if env.stdout is sys.stdout:
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
        return ExitStatus.BROKEN_PIPE
    if isinstance(exc, UsageError):
        print(visible(f"usage error: {exc}"), file=env.stderr)
        return ExitStatus.USAGE
    if not isinstance(exc, SstpBotError):
        logging.getLogger("sstp_bot").debug("unexpected error", exc_info=exc)
    message = describe(exc)
    kind = error_kind(exc)
    if kind is not None and args is not None and getattr(args, "json", False):
        hook = getattr(module, "json_error", None)
        doc = hook(args, exc, message, env) if hook is not None else {"error": {"kind": kind, "message": message}}
        if doc is not None:
            with contextlib.suppress(BrokenPipeError):
                print(json.dumps(doc, indent=2), file=env.stdout)
    print(visible(f"error: {message}"), file=env.stderr)
    return ExitStatus.ERROR
