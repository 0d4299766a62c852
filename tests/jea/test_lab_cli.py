"""`sstp-bot lab --jea` and the demo's JEA server (DESIGN 10, 12)."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest

from bot.cli import Environment, build_parser, main
from bot.cli.lab import run
from bot.config import load_config
from commands.jea import module_version
from commands.psrp import probe_server


def test_lab_jea_serves_every_server_through_the_endpoint(tmp_path: Path) -> None:
    out = io.StringIO()
    env = Environment(stdout=out, stderr=io.StringIO(), environ={})
    path = tmp_path / "lab.toml"
    args = build_parser().parse_args(["lab", "--jea", "--scenario", "healthy", "iis-binding", "--write-config", str(path)])
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(run(args, env, stop)))
    thread.start()
    try:
        for _ in range(200):
            if "Press Ctrl-C" in out.getvalue():
                break
            time.sleep(0.05)
        assert "JEA mode" in out.getvalue()
        config = load_config(path, {})
        assert {s.configuration_name for s in config.servers.values()} == {"SstpBot"}
        snapshot = probe_server(config.servers["vpn-healthy"], {})
        assert snapshot["endpoint"]["configuration_name"] == "SstpBot"
        assert snapshot["endpoint"]["module_version"] == module_version()
    finally:
        stop.set()
        thread.join(10)
    assert result == [0]


def test_lab_without_jea_keeps_the_default_endpoint() -> None:
    args = build_parser().parse_args(["lab", "--scenario", "healthy"])
    assert args.jea is False


@pytest.mark.slow
def test_demo_fixes_a_server_through_the_jea_endpoint_without_script_text(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    code = main(["demo"], Environment(stdout=out, stderr=err, environ={}))
    text = out.getvalue()
    assert code == 0, (text[-2000:], err.getvalue())
    assert "least privilege through the JEA endpoint SstpBot" in text
    assert "Script text received by vpn-jea: 0" in text
    assert "vpn-jea is healthy." in text
    assert list(tmp_path.iterdir()) == []
