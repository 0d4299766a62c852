"""`diagnose` CLI contract (DESIGN 7): JSON shape, exit codes, malformed snapshots (DESIGN 3)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from tests.contract_findings.helpers import (
    clone,
    diagnose,
    diagnose_subprocess,
    healthy,
    iis_binding,
    other_cert,
)

TOP_KEYS = {"server", "status", "checked_at", "findings", "plan", "error"}
FINDING_KEYS = {"id", "severity", "title", "detail", "evidence", "fixable"}


def unhealthy_snapshot() -> dict:
    snap = healthy()
    www = other_cert()
    snap["certificates"].append(www.entry())
    snap["iis"]["https_bindings"] = [iis_binding(www.sha1)]
    return snap


def test_json_shape_healthy():
    r = diagnose(healthy())
    body = r.json
    assert set(body) == TOP_KEYS
    assert body["status"] == "healthy"
    assert body["findings"] == []
    assert body["plan"] is None
    assert body["error"] is None
    datetime.fromisoformat(body["checked_at"].replace("Z", "+00:00"))
    assert r.code == 0


def test_json_shape_unhealthy():
    r = diagnose(unhealthy_snapshot())
    body = r.json
    assert set(body) == TOP_KEYS
    assert body["status"] == "unhealthy"
    assert r.code == 1
    for f in body["findings"]:
        assert set(f) == FINDING_KEYS
        assert f["severity"] in {"critical", "warning", "info"}
    assert body["plan"] is not None and set(body["plan"]) == {"steps", "fingerprint"}


def test_server_name_defaults_to_computer_name_and_can_be_overridden():
    assert diagnose(healthy()).json["server"] == "VPN01"
    assert diagnose(healthy(), None, "--server-name", "vpn-edge-2").json["server"] == "vpn-edge-2"


def test_subprocess_exit_codes():
    assert diagnose_subprocess(healthy(), "--json").code == 0
    r = diagnose_subprocess(unhealthy_snapshot(), "--json")
    assert r.code == 1
    assert r.json["status"] == "unhealthy"
    # without --json a human report is printed, same exit code
    r = diagnose_subprocess(unhealthy_snapshot())
    assert r.code == 1 and r.out.strip()


def test_usage_error_exit_3():
    r = diagnose_subprocess(healthy(), "--no-such-flag")
    assert r.code == 3


def malformed_cases():
    good = healthy()

    def without(path):
        snap = clone(good)
        obj = snap
        for key in path[:-1]:
            obj = obj[key]
        del obj[path[-1]]
        return snap

    wrong_schema = clone(good)
    wrong_schema["schema"] = "sstp-bot/snapshot/v2"
    return {
        "wrong schema": wrong_schema,
        "no schema": without(["schema"]),
        "omitted listeners": without(["listeners"]),
        "omitted sstp.listener_port": without(["sstp", "listener_port"]),
        "omitted http_sys.sni_bindings": without(["http_sys", "sni_bindings"]),
        "omitted probe_errors": without(["probe_errors"]),
        "omitted host.is_admin": without(["host", "is_admin"]),
        "not json": "{this is not json",
        "json list": "[]",
        "empty file": "",
    }


@pytest.mark.parametrize("case", list(malformed_cases()))
def test_malformed_snapshot_is_bad_output_exit_2(case):
    snap = malformed_cases()[case]
    r = diagnose(snap)
    assert r.code == 2, (case, r.out, r.err)
    body = r.json
    assert body["status"] == "error"
    assert body["error"]["kind"] == "bad_output"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["findings"] == []
    assert body["plan"] is None


def test_malformed_snapshot_error_names_the_field():
    snap = healthy()
    del snap["sstp"]["listener_port"]
    msg = diagnose(snap).json["error"]["message"]
    assert "listener_port" in msg


def test_malformed_snapshot_text_mode_message_on_stderr():
    snap = healthy()
    snap["schema"] = "nope"
    r = diagnose(snap, json_out=False)
    assert r.code == 2
    assert "schema" in (r.err + r.out)


@pytest.mark.parametrize(
    "field", ["listeners", "certificates", "events", "iis", "http_sys", "vpn_connections"]
)
def test_null_instead_of_omitted_is_accepted(field):
    snap = healthy()
    snap[field] = None
    snap["probe_errors"] = [{"section": field, "message": "unreadable"}]
    r = diagnose(snap)
    assert r.code == 1
    assert r.json["error"] is None
    assert "PROBE_INCOMPLETE" in r.ids()


def test_missing_snapshot_file_is_could_not_check():
    import subprocess

    from tests.contract_findings.helpers import PYTHON, REPO

    proc = subprocess.run(
        [PYTHON, "-m", "bot", "diagnose", "--snapshot", "/nonexistent/snap.json", "--json"],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["status"] == "error"


def test_stdin_snapshot():
    import subprocess

    from tests.contract_findings.helpers import PYTHON, REPO

    proc = subprocess.run(
        [PYTHON, "-m", "bot", "diagnose", "--snapshot", "-", "--json"],
        input=json.dumps(healthy()),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "healthy"
