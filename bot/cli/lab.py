"""`sstp-bot lab`: emulated RRAS servers on 127.0.0.1 until interrupted (DESIGN 10, docs/lab.md)."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from bot.cli import Environment, ExitStatus
from commands.lab.lab import DEFAULT_SCENARIOS, Lab
from commands.lab.scenarios import load_scenario, scenario_names

DEFAULT_CONFIG = "sstp-bot-lab.toml"


def list_scenarios(env: Environment) -> int:
    for name in scenario_names():
        scenario = load_scenario(name)
        kind = f"fleet of {len(scenario.servers)}" if scenario.is_fleet else scenario.servers[0].name
        print(f"{name:24} {kind:18} {scenario.description}", file=env.stdout)
    return ExitStatus.OK


def start_lab(args: argparse.Namespace, env: Environment) -> tuple[Lab, Path]:
    """Start the lab of the command line, write its inventory, print how to use it."""
    jea = bool(getattr(args, "jea", False))
    lab = Lab(args.scenario or list(DEFAULT_SCENARIOS), jea=jea)
    try:
        config_path = lab.write_config(Path(args.write_config or DEFAULT_CONFIG))
    except BaseException:
        lab.stop()
        raise
    print(f"Lab running: {len(lab.servers)} emulated RRAS server(s) on 127.0.0.1", file=env.stdout)
    if jea:
        # DESIGN 12: what a server with Install-SstpBotEndpoint.ps1 run on it accepts.
        print("JEA mode: each server accepts only the configuration SstpBot (configuration_name in the "
              "inventory), runs its functions, and refuses script text.", file=env.stdout)
    for name, server in lab.servers.items():
        print(
            f"  {name:18} {server.transport}://{server.host}:{server.port:<6} {server.spec.scenario:22} "
            f"{server.spec.description}",
            file=env.stdout,
        )
    print(f"Inventory written to {config_path}", file=env.stdout)
    print(f"Try:  sstp-bot --config {config_path} check --all", file=env.stdout)
    # Suggest a server the bot can fix, not merely the first one (which may be healthy).
    fixable = [name for name, server in lab.servers.items() if server.spec.fixable]
    broken = [name for name, server in lab.servers.items() if server.spec.expect]
    target = next(iter(fixable or broken or list(lab.servers)))
    print(f"      sstp-bot --config {config_path} fix {target}", file=env.stdout)
    print("Press Ctrl-C to stop.", file=env.stdout)
    return lab, config_path


def run(args: argparse.Namespace, env: Environment, stop: threading.Event | None = None) -> int:
    if args.list:
        return list_scenarios(env)
    stop = stop or threading.Event()
    lab, _ = start_lab(args, env)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        lab.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        print("Lab stopped.", file=env.stdout)
    return ExitStatus.OK
