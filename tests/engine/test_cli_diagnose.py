"""`sstp-bot diagnose`: JSON contract, exit codes, terminal report."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from bot.cli import Environment, main
from tests.engine.builder import NOW, healthy, with_iis_binding

EXAMPLES = Path(__file__).resolve().parents[2] / "commands" / "examples"
TOP_KEYS = {"server", "status", "checked_at", "findings", "plan", "error"}
FINDING_KEYS = {"id", "severity", "title", "detail", "evidence", "fixable"}
STEP_KEYS = {"action", "params", "description", "disruptive"}


def _run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, stdin=io.StringIO(stdin), environ={}, clock=lambda: NOW)
    code = main(argv, env=env)
    return code, out.getvalue(), err.getvalue()


def _write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def test_healthy_json_exit_0(tmp_path: Path) -> None:
    code, out, _ = _run(["diagnose", "--snapshot", _write(tmp_path, "vpn01.json", healthy()), "--json"])
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == TOP_KEYS
    assert doc["status"] == "healthy" and doc["findings"] == [] and doc["plan"] is None and doc["error"] is None
    assert doc["server"] == "VPN01"
    assert doc["checked_at"] == healthy()["collected_at"]  # DESIGN 7 [2]: the snapshot's own time


def test_iis_binding_json_exit_1(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.json", with_iis_binding(healthy()))
    code, out, _ = _run(["diagnose", "--snapshot", path, "--json", "--server-name", "vpn01", "--public-name", "vpn.example.com"])
    assert code == 1
    doc = json.loads(out)
    assert doc["server"] == "vpn01" and doc["status"] == "unhealthy"
    assert all(set(f) == FINDING_KEYS for f in doc["findings"])
    assert doc["findings"][0]["severity"] == "critical"
    assert "SSTP_HASH_MISMATCH" in {f["id"] for f in doc["findings"]}
    assert set(doc["plan"]) == {"steps", "fingerprint"}
    assert all(set(s) == STEP_KEYS for s in doc["plan"]["steps"])
    assert [s["action"] for s in doc["plan"]["steps"]][-1] == "bind_sstp_certificate"


def test_public_name_is_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.json", healthy())
    code, out, _ = _run(["diagnose", "--snapshot", path, "--json", "--public-name", "vpn.example.org"])
    assert code == 1
    assert "SSTP_CERT_NAME_MISMATCH" in {f["id"] for f in json.loads(out)["findings"]}
    # without --public-name the name is not evaluated
    assert _run(["diagnose", "--snapshot", path, "--json"])[0] == 0


def test_stdin(tmp_path: Path) -> None:
    code, out, _ = _run(["diagnose", "--snapshot", "-", "--json"], stdin=json.dumps(with_iis_binding(healthy())))
    assert code == 1 and json.loads(out)["status"] == "unhealthy"


@pytest.mark.parametrize(
    "content",
    [
        '{"schema": "sstp-bot/snapshot/v1", "host": ',
        json.dumps({**healthy(), "sstp": "broken"}),
        "",
    ],
)
def test_malformed_snapshot_exit_2_with_json_error(tmp_path: Path, content: str) -> None:
    code, out, _ = _run(["diagnose", "--snapshot", _write(tmp_path, "bad.json", content), "--json"])
    assert code == 2
    doc = json.loads(out)
    assert set(doc) == TOP_KEYS
    assert doc["status"] == "error" and doc["error"]["kind"] == "bad_output" and doc["error"]["message"]
    assert doc["findings"] == [] and doc["plan"] is None


def test_malformed_snapshot_names_field_on_stderr(tmp_path: Path) -> None:
    snap = healthy()
    snap["http_sys"]["ip_bindings"][1]["cert_hash"] = 5
    code, _out, err = _run(["diagnose", "--snapshot", _write(tmp_path, "bad.json", snap)])
    assert code == 2 and "http_sys.ip_bindings[1].cert_hash" in err


def test_missing_file_exit_2(tmp_path: Path) -> None:
    code, out, err = _run(["diagnose", "--snapshot", str(tmp_path / "nope.json"), "--json"])
    assert code == 2
    assert json.loads(out)["error"]["kind"] == "bad_output"
    assert "nope.json" in err
    code, out, err = _run(["diagnose", "--snapshot", str(tmp_path / "nope.json")])
    assert code == 2 and out == ""


def test_oversized_file_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * (10 * 1024 * 1024 + 5))
    code, out, _ = _run(["diagnose", "--snapshot", str(path), "--json"])
    assert code == 2 and "10 MB" in json.loads(out)["error"]["message"]


def test_usage_errors_exit_3() -> None:
    assert _run(["diagnose"])[0] == 3
    assert _run(["diagnose", "--snapshot", "x.json", "--bogus"])[0] == 3


def test_server_name_falls_back_to_file_stem(tmp_path: Path) -> None:
    snap = healthy()
    snap["host"]["computer_name"] = None
    _, out, _ = _run(["diagnose", "--snapshot", _write(tmp_path, "vpn07.json", snap), "--json"])
    assert json.loads(out)["server"] == "vpn07"


def test_terminal_report(tmp_path: Path) -> None:
    code, out, _ = _run(["diagnose", "--snapshot", _write(tmp_path, "x.json", with_iis_binding(healthy()))])
    assert code == 1
    assert "UNHEALTHY" in out and "SSTP_HASH_MISMATCH" in out
    assert "disruptive" in out and "bind_sstp_certificate" in out
    code, out, _ = _run(["diagnose", "--snapshot", _write(tmp_path, "y.json", healthy())])
    assert code == 0 and "HEALTHY" in out


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_shipped_examples(example: str) -> None:
    code, out, _ = _run(["diagnose", "--snapshot", str(EXAMPLES / example), "--json", "--public-name", "vpn.example.com"])
    doc = json.loads(out)
    if example.startswith("healthy"):
        assert code == 0 and doc["status"] == "healthy"
    else:
        assert code == 1 and doc["plan"] is not None, doc["findings"]


def test_iis_binding_example_is_the_classic_case() -> None:
    _code, out, _ = _run(["diagnose", "--snapshot", str(EXAMPLES / "iis-binding.json"), "--json"])
    doc = json.loads(out)
    ids = {f["id"] for f in doc["findings"]}
    assert {"SSTP_HASH_MISMATCH", "IIS_HTTPS_BINDING"} <= ids
    assert [s["action"] for s in doc["plan"]["steps"]] == [
        "remove_iis_binding", "restart_iis", "delete_httpsys_binding", "bind_sstp_certificate"
    ]
