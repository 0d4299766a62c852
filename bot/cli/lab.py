"""`sstp-bot lab`: emulated RRAS servers on 127.0.0.1 until interrupted (DESIGN 10, docs/lab.md)."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from bot.cli import Environment, ExitStatus
from bot.terminal import make_console, say
from commands.lab.lab import DEFAULT_SCENARIOS, Lab
from commands.lab.scenarios import load_scenario, scenario_names

DEFAULT_CONFIG = "sstp-bot-lab.toml"


def list_scenarios(env: Environment) -> int:
    console = make_console(env.stdout, env.width)
    for name in scenario_names():
        scenario = load_scenario(name)
        kind = f"fleet of {len(scenario.servers)}" if scenario.is_fleet else scenario.servers[0].name
        say(console, f"{name}  ({kind})", hang=4)
        say(console, scenario.description, indent=4)
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
    console = make_console(env.stdout, env.width)
    say(console, f"Lab running: {len(lab.servers)} emulated RRAS server(s) on 127.0.0.1")
    if jea:
        # DESIGN 12: what a server with Install-SstpBotEndpoint.ps1 run on it accepts.
        say(console, "JEA mode: each server accepts only the configuration SstpBot (configuration_name in the "
            "inventory), runs its functions, and refuses script text.", hang=2)
    for name, server in lab.servers.items():
        say(console, f"  {name}  {server.transport}://{server.host}:{server.port}  {server.spec.scenario}", hang=6)
        say(console, server.spec.description, indent=6)
    say(console, f"Inventory written to {config_path}", hang=2)
    say(console, f"Try:  sstp-bot --config {config_path} check --all", hang=6)
    target = suggested_fix_target(lab)
    if target is not None:
        say(console, f"      sstp-bot --config {config_path} fix {target}", hang=6)
    say(console, "Press Ctrl-C to stop.")
    return lab, config_path


def suggested_fix_target(lab: Lab) -> str | None:
    """A server whose scenario the bot can fix, else one that is broken at all; never a healthy one
    (`fix` of a healthy server only says there is nothing to fix). None when every server is healthy."""
    # `fixable` alone is not enough: the healthy scenario is "fixable" too (a fix of it changes nothing).
    broken = [name for name, server in lab.servers.items() if server.spec.expect]
    fixable = [name for name in broken if lab.servers[name].spec.fixable]
    return next(iter(fixable or broken), None)


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
        print("Lab stopped.", file=env.stdout, flush=True)
    return ExitStatus.OK
