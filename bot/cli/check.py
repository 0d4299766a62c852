"""`sstp-bot check SERVER... | --all | --group G [--json]`."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import threading
from pathlib import Path
from typing import Any

from bot.cli import Environment, ExitStatus, error_kind, open_service
from bot.config import load_config
from bot.service import Actor, CheckOutcome, resolve_targets
from bot.terminal import make_console, render_check, render_summary, terminal_width
from commands.errors import ConfigError, UnknownServer, UsageError
from commands.files import write_file
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


def json_error(args: argparse.Namespace, exc: BaseException, message: str, env: Environment) -> Any:
    """The check JSON of a check that could not start (a configuration error): one document per name."""
    fleet = bool(args.all or args.group or len(args.servers) > 1)
    names = args.servers or [args.group or "all"]
    unknown = exc.name if isinstance(exc, UnknownServer) else None

    def reason(name: str) -> str:
        if unknown is None or name == unknown:
            return message
        return f"not checked: the request also names {unknown!r}, which is not in the inventory"

    kind = error_kind(exc) or "config"
    docs = [
        CheckResult(server=name, checked_at=env.clock(), error_kind=kind, error_message=reason(name)).to_json()
        for name in names
    ]
    return docs if fleet else docs[0]


def run(args: argparse.Namespace, env: Environment) -> int:
    with contextlib.ExitStack() as cleanup:
        return _run(args, env, cleanup)


def _run(args: argparse.Namespace, env: Environment, cleanup: contextlib.ExitStack) -> int:
    if not (args.servers or args.all or args.group):
        raise UsageError("check: name at least one SERVER, or use --all or --group G")
    if args.all and (args.servers or args.group):
        raise UsageError("check: --all cannot be combined with server names or --group")
    fleet = bool(args.all or args.group or len(args.servers) > 1)
    config = load_config(args.config, env.environ)
    # Resolve every name before anything connects: one unknown name refuses the whole command.
    targets = resolve_targets(config, args.servers, all_servers=args.all, group=args.group)
    snapshot_dir = _snapshot_dir(args.save_snapshot)
    service = open_service(config, env)  # a bad database.url is a config error too
    cleanup.callback(service.close)
    console = make_console(env.stdout, env.width)
    progress = Progress(env, len(targets)) if fleet else None
    # Results arrive from the fleet's worker threads: one report at a time, never interleaved.
    printing = threading.Lock()

    def show(outcome: CheckOutcome) -> None:
        with printing:
            _show(outcome)

    def _show(outcome: CheckOutcome) -> None:
        if progress is not None:
            progress.done(outcome.result)
        if snapshot_dir is not None:
            save_snapshot(outcome.result, snapshot_dir)
        if not args.json:
            if progress is not None:
                progress.clear()
            render_check(outcome.result, console)
            if fleet:
                console.print()
        if progress is not None:
            progress.show()

    if progress is not None:
        progress.show()
    try:
        outcomes = service.check(targets, cli_actor(), on_result=show)
    finally:
        if progress is not None:
            progress.clear()
    results = [o.result for o in outcomes]
    if args.json:
        payload = [r.to_json() for r in results] if fleet else results[0].to_json()
        print(json.dumps(payload, indent=2), file=env.stdout)
    elif fleet:
        render_summary(results, console)
    return exit_status(results)


def _snapshot_dir(value: str | None) -> Path | None:
    """`--save-snapshot DIR`, created if missing, before anything connects."""
    if not value:
        return None
    folder = Path(value)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--save-snapshot: cannot create {folder}: {exc.strerror or exc}") from None
    return folder


def save_snapshot(result: CheckResult, folder: Path) -> Path | None:
    """Write the server's snapshot to `folder/NAME.json`, exactly what `diagnose --snapshot` reads; a
    server that could not be checked has no snapshot (and nothing is written)."""
    if result.snapshot is None:
        return None
    path = folder / f"{result.server}.json"
    write_file(path, (json.dumps(result.snapshot, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return path


class Progress:
    """`checked 3 of 12: vpn03 ...` on stderr while servers are outstanding: on a terminal only, and
    rewritten in place (a carriage return), so a log or a pipe gets none of it."""

    def __init__(self, env: Environment, total: int) -> None:
        self.enabled = env.stderr_is_terminal and total > 1
        self.stream = env.stderr
        self.width = terminal_width(env.environ, env.stderr)
        self.total = total
        self.finished = 0
        self.last = ""
        self.shown = False

    def done(self, result: CheckResult) -> None:
        self.finished += 1
        self.last = result.server

    def show(self) -> None:
        if not self.enabled or self.finished >= self.total:
            return
        text = f"checked {self.finished} of {self.total} servers" + (f" (last: {self.last})" if self.last else "")
        self.stream.write("\r" + text[: self.width - 1] + "\x1b[K")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.enabled and self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False
