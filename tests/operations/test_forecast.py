"""`sstp-bot forecast [--json] [--png FILE] [--days N]` from the latest checks (DESIGN 7 [2])."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from commands.lab import Lab
from tests.operations.conftest import Run


def test_forecast_lists_every_certificate_soonest_first(lab: Lab, tmp_path: Path, cli: Callable[..., Run]) -> None:
    config = lab.write_config(tmp_path / "lab.toml")
    before = cli(config, "forecast", "--json")
    assert before.code == 0 and before.json() == []  # nothing checked yet: nothing known
    assert cli(config, "sweep").code == 1
    run = cli(config, "forecast", "--json")
    assert run.code == 0, run.err
    entries = run.json()
    assert entries[0]["server"] == "vpn-expired"
    assert {e["server"] for e in entries} == {"vpn-healthy", "vpn-iis", "vpn-expired"}
    assert [e["not_after"] for e in entries] == sorted(e["not_after"] for e in entries)
    expired = entries[0]
    assert set(expired) == {"server", "thumbprint", "subject", "not_after", "days_left", "renewal_in_store"}
    assert expired["days_left"] in (-2, -3) and expired["renewal_in_store"] is True
    assert len(expired["thumbprint"]) == 40
    twin = lab.servers["vpn-expired"].twin
    assert expired["thumbprint"] == twin.state.sha1_hash or expired["thumbprint"] == twin.state.remote_access_thumbprint
    healthy = next(e for e in entries if e["server"] == "vpn-healthy")
    assert healthy["renewal_in_store"] is False and healthy["days_left"] > 0
    not_after = datetime.strptime(healthy["not_after"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((not_after - datetime.now(UTC)).days - healthy["days_left"]) <= 1

    soon = cli(config, "forecast", "--json", "--days", "10").json()
    assert [e["server"] for e in soon] == ["vpn-expired"]
    text = cli(config, "forecast", "--days", "10")
    assert "vpn-expired" in text.out and "renewal in store" in text.out and "vpn-healthy" not in text.out


def test_forecast_png_is_a_chart(lab: Lab, tmp_path: Path, cli: Callable[..., Run]) -> None:
    pytest.importorskip("matplotlib")
    config = lab.write_config(tmp_path / "lab.toml")
    cli(config, "sweep")
    png = tmp_path / "expiry.png"
    run = cli(config, "forecast", "--png", str(png))
    assert run.code == 0, run.err
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    width = int.from_bytes(data[16:20], "big")
    assert width >= 1000


def test_forecast_config_errors(tmp_path: Path, cli: Callable[..., Run]) -> None:
    missing = cli(tmp_path / "nope.toml", "forecast")
    assert missing.code == 2
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "c.db"}"\n')
    assert cli(config, "forecast", "--png", str(tmp_path / "no" / "dir" / "x.png")).code == 2
    assert cli(config, "forecast", "--days", "-1").code == 3


def test_text_output_fits_columns(lab: Lab, tmp_path: Path, cli: Callable[..., Run]) -> None:
    config = lab.write_config(tmp_path / "lab.toml")
    cli(config, "sweep")
    import io

    from bot.cli import Environment, main  # COLUMNS comes from the environment (DESIGN 7)

    for command in ("forecast", "sweep"):
        out = io.StringIO()
        main(["--config", str(config), command], Environment(stdout=out, stderr=io.StringIO(), environ={"COLUMNS": "50"}))
        lines = out.getvalue().splitlines()
        assert lines
        thumbprints = {e.twin.state.sha1_hash for e in lab.servers.values()}
        for line in lines:
            assert len(line) <= 50 or line.strip() in thumbprints, line

