"""`sstp-bot sweep [--json]` through the lab (DESIGN 7 [2]): changes since each server's previous check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from commands.lab import Lab
from tests.operations.conftest import Run, set_remoteaccess


def test_sweep_reports_only_what_changed(lab: Lab, tmp_path: Path, cli: Callable[..., Run]) -> None:
    config = lab.write_config(tmp_path / "lab.toml")
    first = cli(config, "sweep", "--json")
    assert first.code == 1, first.err  # iis-binding and the expired certificate have findings
    doc = first.json()
    assert set(doc) == {"checked_at", "servers", "changes"}
    statuses = {s["server"]: s["status"] for s in doc["servers"]}
    assert statuses == {"vpn-healthy": "healthy", "vpn-iis": "unhealthy", "vpn-expired": "unhealthy"}
    # Never checked before: from null, new = every critical and warning ID, nothing resolved.
    by_server = {c["server"]: c for c in doc["changes"]}
    assert set(by_server) == {"vpn-healthy", "vpn-iis", "vpn-expired"}
    assert by_server["vpn-healthy"] == {"server": "vpn-healthy", "from": None, "to": "healthy", "new": [], "resolved": []}
    iis = next(s for s in doc["servers"] if s["server"] == "vpn-iis")
    alerting = sorted({f["id"] for f in iis["findings"] if f["severity"] in ("critical", "warning")})
    assert by_server["vpn-iis"]["from"] is None and by_server["vpn-iis"]["new"] == alerting
    assert "IIS_HTTPS_BINDING" in alerting

    again = cli(config, "sweep", "--json")
    assert again.code == 1 and again.json()["changes"] == []

    set_remoteaccess(lab, "vpn-healthy", "Stopped")
    broken = cli(config, "sweep", "--json").json()
    assert [c["server"] for c in broken["changes"]] == ["vpn-healthy"]
    change = broken["changes"][0]
    assert (change["from"], change["to"], change["resolved"]) == ("healthy", "unhealthy", [])
    assert "REMOTEACCESS_STOPPED" in change["new"]

    set_remoteaccess(lab, "vpn-healthy", "Running")
    text = cli(config, "sweep")
    assert text.code == 1
    assert "vpn-healthy: unhealthy -> healthy; resolved" in text.out
    assert "REMOTEACCESS_STOPPED" in text.out


def test_sweep_exit_codes(tmp_path: Path, cli: Callable[..., Run]) -> None:
    with Lab(["healthy"]) as healthy:
        config = healthy.write_config(tmp_path / "ok.toml")
        assert cli(config, "sweep").code == 0
    with Lab(["healthy"], faults={"vpn-healthy": ["refused"]}) as down:
        config = down.write_config(tmp_path / "down.toml")
        run = cli(config, "sweep", "--json")
        assert run.code == 2
        assert run.json()["servers"][0]["error"]["kind"] == "unreachable"
    empty = tmp_path / "empty.toml"
    empty.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "e.db"}"\n')
    bad = cli(empty, "sweep")
    assert bad.code == 2 and "no servers" in bad.err
