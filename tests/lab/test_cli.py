"""`sstp-bot lab`: list, start, write an inventory the bot can load, stop."""

from __future__ import annotations

import io
import os
import stat
import threading
import time

from bot.cli import Environment, build_parser, main
from bot.cli.lab import run
from bot.config import load_config
from commands.lab.lab import LAB_PASSWORD
from commands.psrp import probe_server


def _env() -> Environment:
    return Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ={})


def test_list_names_every_scenario():
    env = _env()
    assert main(["lab", "--list"], env) == 0
    out = env.stdout.getvalue()  # type: ignore[attr-defined]
    for name in ("healthy", "iis-binding", "fleet", "foreign-process"):
        assert name in out


def test_lab_runs_until_stopped_and_its_inventory_works(tmp_path):
    env = _env()
    path = tmp_path / "lab.toml"
    args = build_parser().parse_args(["lab", "--scenario", "healthy", "--scenario", "iis-binding",
                                      "--write-config", str(path)])
    stop = threading.Event()
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(run(args, env, stop)))
    t.start()
    try:
        for _ in range(100):
            if path.exists() and "Press Ctrl-C" in env.stdout.getvalue():  # type: ignore[attr-defined]
                break
            time.sleep(0.05)
        config = load_config(path, {})
        assert sorted(config.servers) == ["vpn-healthy", "vpn-iis"]
        server = config.servers["vpn-iis"]
        assert server.password_env in ("", None) and server.password_file
        assert stat.S_IMODE(os.stat(server.password_file).st_mode) == 0o600
        assert server.password({}) == LAB_PASSWORD
        assert probe_server(server, {})["host"]["computer_name"] == "VPN-IIS"
    finally:
        stop.set()
        t.join(10)
    assert result == [0]
    assert "Lab stopped." in env.stdout.getvalue()  # type: ignore[attr-defined]


def test_the_written_inventory_works_from_any_directory(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`lab --write-config lab.toml` writes absolute paths: a check from another directory finds the
    password file and the database next to the inventory, and leaves nothing where it runs."""
    import io

    from bot.cli import Environment
    from bot.cli import main as cli_main
    from commands.lab.lab import Lab

    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    with Lab(["healthy"]) as lab:
        monkeypatch.chdir(here)
        lab.write_config("lab.toml")
        monkeypatch.chdir(elsewhere)
        out, err = io.StringIO(), io.StringIO()
        env = Environment(stdout=out, stderr=err, environ={})
        code = cli_main(["--config", str(here / "lab.toml"), "check", "--all", "--json"], env)
    assert code == 0, err.getvalue()
    assert list(elsewhere.iterdir()) == []
    assert (here / "lab.db").exists()


def test_scenario_names_after_one_flag_or_repeated() -> None:
    from bot.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["lab", "--scenario", "healthy", "iis-binding"]).scenario == ["healthy", "iis-binding"]
    assert parser.parse_args(["lab", "--scenario", "healthy", "--scenario", "sni-binding"]).scenario == [
        "healthy", "sni-binding"]
    assert parser.parse_args(["lab"]).scenario is None
