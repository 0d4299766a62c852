"""`sstp-bot diagnose --snapshot FILE`: analyse a saved snapshot offline (no server contact)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from bot.cli import Environment, ExitStatus, error_kind
from bot.config import Config, check_public_name, load_config, resolve_config_path
from bot.terminal import make_console, render_check
from commands.engine import evaluate_snapshot
from commands.errors import SnapshotError
from commands.model import CheckResult
from commands.server import SERVER_NAME_RE, ServerConfig
from commands.snapshot import MAX_SNAPSHOT_BYTES, Snapshot, parse_snapshot


def _read(path: str, env: Environment) -> bytes | str:
    """The snapshot text; refuses files over the size limit before reading them whole."""
    if path == "-":
        text = env.stdin.read(MAX_SNAPSHOT_BYTES + 1)
        return text
    file = Path(path)
    with file.open("rb") as handle:
        return handle.read(MAX_SNAPSHOT_BYTES + 1)


def _default_name(snapshot: Snapshot | None, path: str) -> str:
    """The snapshot's computer name as given, else the file's stem."""
    name = snapshot.host.computer_name if snapshot is not None else None
    if name and SERVER_NAME_RE.match(name):
        return name
    if path != "-":
        stem = Path(path).stem
        if SERVER_NAME_RE.match(stem):
            return stem
    return "snapshot"


def _server_settings(name: str, args: argparse.Namespace, env: Environment) -> ServerConfig:
    """What the analysis needs to know of the server: its inventory entry (public name, offload hash,
    expiry warning window) when the configuration has one, else `[defaults]`, else the built-in
    defaults. The configuration is read when one is named (`--config`, SSTP_BOT_CONFIG) or
    `./sstp-bot.toml` exists: offline analysis needs no configuration at all. `--public-name` wins."""
    path = resolve_config_path(args.config, env.environ)
    named = args.config or env.environ.get("SSTP_BOT_CONFIG") or path.exists()
    config = load_config(path, env.environ) if named else Config()
    server = config.offline_server(name)
    if args.public_name:
        server = replace(server, public_name=check_public_name(args.public_name, "--public-name"))
    return server


def _emit(result: CheckResult, args: argparse.Namespace, env: Environment) -> None:
    if args.json:
        print(json.dumps(result.to_json(), indent=2), file=env.stdout)
    else:
        render_check(result, make_console(env.stdout, env.width))


def run(args: argparse.Namespace, env: Environment) -> int:
    now = env.clock()
    try:
        raw = _read(args.snapshot, env)
    except (OSError, UnicodeDecodeError) as exc:
        name = args.server_name or (Path(args.snapshot).stem if args.snapshot != "-" else "snapshot")
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        message = f"cannot read {args.snapshot}: {reason}"
        result = CheckResult(server=name, checked_at=now, error_kind="bad_output", error_message=message)
        if args.json:
            _emit(result, args, env)
        print(f"error: {message}", file=env.stderr)
        return ExitStatus.ERROR
    snapshot: Snapshot | None = None
    error = ""
    try:
        snapshot = parse_snapshot(raw)
    except SnapshotError as exc:
        error = str(exc)
    name = args.server_name or _default_name(snapshot, args.snapshot)
    args.reported_name = name  # for json_error: a configuration error is reported under this name
    server = _server_settings(name, args, env)
    if snapshot is None:
        result = CheckResult(server=name, checked_at=now, error_kind="bad_output", error_message=error)
    else:
        # The report is about the moment the snapshot was taken, not the moment it was read (DESIGN 7
        # [2]): certificate dates and the event window are judged then, so a replay is the check.
        result = evaluate_snapshot(snapshot, server, snapshot.collected_at)
    _emit(result, args, env)
    if result.status == "error":
        if not args.json:
            print(f"error: {result.error_message}", file=env.stderr)
        return ExitStatus.ERROR
    return ExitStatus.OK if result.status == "healthy" else ExitStatus.FINDINGS


def json_error(args: argparse.Namespace, exc: BaseException, message: str, env: Environment) -> Any:
    """The check JSON of an analysis that could not start (a configuration error)."""
    name = getattr(args, "reported_name", None) or args.server_name or _default_name(None, args.snapshot)
    return CheckResult(server=name, checked_at=env.clock(), error_kind=error_kind(exc) or "config",
                       error_message=message).to_json()
