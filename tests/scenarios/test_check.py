"""`sstp-bot check` through the CLI against the lab fleet: JSON contract, exit codes, inventory refusals."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import LabSetup

CHECK_KEYS = {"server", "status", "checked_at", "findings", "plan", "error"}
FINDING_KEYS = {"id", "severity", "title", "detail", "evidence", "fixable"}
STEP_KEYS = {"action", "params", "description", "disruptive"}
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def assert_check_contract(doc: dict) -> None:
    """One `check --json` object, exactly as DESIGN 7 / docs/json.md fix it."""
    assert isinstance(doc, dict)
    assert set(doc) == CHECK_KEYS, sorted(doc)
    assert doc["status"] in ("healthy", "unhealthy", "error")
    assert isinstance(doc["findings"], list)
    for f in doc["findings"]:
        assert set(f) == FINDING_KEYS, sorted(f)
        assert f["severity"] in ("critical", "warning", "info")
        assert isinstance(f["id"], str) and f["id"].isupper()
        assert isinstance(f["title"], str) and f["title"]
        assert isinstance(f["detail"], str) and f["detail"]
        assert isinstance(f["evidence"], dict)
        assert isinstance(f["fixable"], bool)
    order = {"critical": 0, "warning": 1, "info": 2}
    keys = [(order[f["severity"]], f["id"]) for f in doc["findings"]]
    assert keys == sorted(keys), "findings are sorted by severity, then ID"
    if doc["plan"] is not None:
        assert set(doc["plan"]) == {"steps", "fingerprint"}
        assert re.fullmatch(r"[0-9a-f]{64}", doc["plan"]["fingerprint"])
        assert doc["plan"]["steps"]
        for step in doc["plan"]["steps"]:
            assert set(step) == STEP_KEYS, sorted(step)
            assert isinstance(step["params"], dict)
            assert isinstance(step["disruptive"], bool)
            assert isinstance(step["description"], str) and step["description"]
    if doc["status"] == "error":
        assert set(doc["error"]) == {"kind", "message"}
        assert doc["error"]["kind"] in ("config", "unreachable", "tls", "auth", "timeout", "script_failed",
                                        "bad_output")
        assert doc["error"]["message"]
    else:
        assert doc["error"] is None
        assert TIME_RE.match(doc["checked_at"]), doc["checked_at"]
        serious = [f for f in doc["findings"] if f["severity"] in ("critical", "warning")]
        assert (doc["status"] == "healthy") == (not serious)


def expected_exit(docs: list[dict]) -> int:
    """docs/json.md: 2 if any server could not be checked, else 1 if any has findings, else 0."""
    if any(d["status"] == "error" for d in docs):
        return 2
    return 1 if any(d["status"] == "unhealthy" for d in docs) else 0


def test_healthy_server_json(fleet: LabSetup):
    fleet.clear_logs()
    code, out, err = fleet.cli("check", "vpn01", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert_check_contract(doc)
    assert doc["server"] == "vpn01" and doc["status"] == "healthy"
    assert doc["plan"] is None and doc["error"] is None
    assert not [f for f in doc["findings"] if f["severity"] != "info"]
    # Only the named server was contacted.
    assert fleet.server("vpn01").requests
    assert all(not s.requests for n, s in fleet.lab.servers.items() if n != "vpn01")


def test_broken_server_json_has_findings_and_a_plan(fleet: LabSetup):
    run = fleet.cli("check", "vpn02", "--json")
    assert run.code == 1, run.stderr
    doc = run.json()
    assert_check_contract(doc)
    assert doc["server"] == "vpn02" and doc["status"] == "unhealthy"
    ids = {f["id"] for f in doc["findings"]}
    assert {"SSTP_HASH_MISMATCH", "IIS_HTTPS_BINDING", "HTTPSYS_FOREIGN_BINDING"} <= ids
    assert doc["plan"] is not None
    actions = [s["action"] for s in doc["plan"]["steps"]]
    assert actions[0] == "remove_iis_binding" and actions[-1] == "bind_sstp_certificate"
    assert {"Endpoint": "0.0.0.0:443"} in [s["params"] for s in doc["plan"]["steps"]]
    # The certificate bound is the one in the twin's store that SSTP is configured with.
    twin = fleet.server("vpn02").twin.copy_state()
    sstp_thumb = next(c.thumbprint for c in twin.certificates if c.sha256 == twin.sha256_hash)
    assert doc["plan"]["steps"][-1]["params"] == {"Thumbprint": sstp_thumb}
    assert doc["plan"]["steps"][-1]["disruptive"] is True


def test_unfixable_server_has_no_plan(fleet: LabSetup):
    run = fleet.cli("check", "vpn06", "--json")
    assert run.code == 1
    doc = run.json()
    assert_check_contract(doc)
    assert "PORT_OWNED_BY_OTHER_PROCESS" in {f["id"] for f in doc["findings"]}
    assert doc["plan"] is None


def test_all_is_a_list_with_the_documented_exit_code(fleet: LabSetup):
    run = fleet.cli("check", "--all", "--json")
    docs = run.json()
    assert isinstance(docs, list)
    assert [d["server"] for d in docs] == list(fleet.lab.servers)
    for d in docs:
        assert_check_contract(d)
    assert run.code == expected_exit(docs) == 1  # the fleet has broken servers but every one answers
    status = {d["server"]: d["status"] for d in docs}
    assert status == {"vpn01": "healthy", "vpn02": "unhealthy", "vpn03": "healthy", "vpn04": "unhealthy",
                      "vpn05": "unhealthy", "vpn06": "unhealthy"}


def test_several_names_print_a_list(fleet: LabSetup):
    run = fleet.cli("check", "vpn01", "vpn03", "--json")
    assert run.code == 0
    docs = run.json()
    assert isinstance(docs, list) and [d["server"] for d in docs] == ["vpn01", "vpn03"]


def test_group(fleet: LabSetup):
    run = fleet.cli("check", "--group", "lab", "--json")
    docs = run.json()
    assert isinstance(docs, list) and len(docs) == len(fleet.lab.servers)
    assert run.code == expected_exit(docs) == 1


def test_unknown_group_is_a_config_error_and_connects_nowhere(fleet: LabSetup):
    fleet.clear_logs()
    run = fleet.cli("check", "--group", "nowhere", "--json")
    assert run.code == 2
    [doc] = run.json()  # a group check prints a list, even when it fails
    assert doc["error"]["kind"] == "config"
    assert fleet.total_requests() == 0


@pytest.mark.parametrize("argv", [["nope"], ["vpn01", "nope"], ["nope", "vpn02"]])
def test_unknown_server_is_refused_before_anything_connects(fleet: LabSetup, argv):
    fleet.clear_logs()
    run = fleet.cli("check", *argv, "--json")
    assert run.code == 2
    docs = run.json() if len(argv) > 1 else [run.json()]  # several servers: a list, one per name
    assert [d["server"] for d in docs] == argv
    for doc in docs:
        assert doc["status"] == "error"
        assert doc["error"]["kind"] == "config"
        assert "nope" in doc["error"]["message"]
    assert "nope" in run.stderr
    # One unknown name refuses the whole command: no request reached any lab server.
    assert fleet.total_requests() == 0


def test_unknown_server_without_json_is_a_clear_message(fleet: LabSetup):
    fleet.clear_logs()
    run = fleet.cli("check", "nope")
    assert run.code == 2
    assert "Unknown server 'nope'" in run.stderr and "vpn01" in run.stderr
    assert fleet.total_requests() == 0


@pytest.mark.parametrize(
    "argv",
    [
        [],  # no subcommand
        ["check"],  # no server, no --all, no --group
        ["check", "--json"],
        ["check", "--all", "vpn01"],
        ["check", "--all", "--group", "lab"],
        ["check", "--bogus"],
    ],
)
def test_usage_errors_exit_3_and_connect_nowhere(fleet: LabSetup, argv):
    fleet.clear_logs()
    run = fleet.cli(*argv)
    assert run.code == 3, (run.stdout, run.stderr)
    assert fleet.total_requests() == 0
    if argv:
        assert "usage error" in run.stderr


def test_readable_report(fleet: LabSetup):
    run = fleet.cli("check", "vpn02")
    assert run.code == 1
    out = run.stdout
    assert "vpn02" in out and "UNHEALTHY" in out
    for finding in ("SSTP_HASH_MISMATCH", "IIS_HTTPS_BINDING", "HTTPSYS_FOREIGN_BINDING"):
        assert finding in out
    users = fleet.server("vpn02").twin.copy_state().vpn_connections
    assert users > 0
    # the plan, its disruptive step flagged, and how many users it drops
    assert f"Plan (drops the {users} connected VPN users)" in out
    assert "[disruptive]" in out
    assert "remove_iis_binding(Site=Default Web Site" in out and "bind_sstp_certificate(Thumbprint=" in out
    assert not out.lstrip().startswith(("{", "["))

    healthy = fleet.cli("check", "vpn01")
    assert healthy.code == 0
    assert "vpn01" in healthy.stdout and "HEALTHY" in healthy.stdout and "UNHEALTHY" not in healthy.stdout
    assert "Plan" not in healthy.stdout

    unfixable = fleet.cli("check", "vpn06")
    assert unfixable.code == 1
    assert "PORT_OWNED_BY_OTHER_PROCESS" in unfixable.stdout
    assert "No automatic fix" in unfixable.stdout


def test_readable_fleet_report_summarises(fleet: LabSetup):
    run = fleet.cli("check", "--all")
    assert run.code == 1
    assert "2 of 6 servers healthy." in run.stdout
    for name in fleet.lab.servers:
        assert name in run.stdout


def test_check_uses_ntlm_with_message_encryption(fleet: LabSetup):
    """The lab inventory's auth: NTLM over HTTP; the endpoint refuses unencrypted messages on HTTP."""
    config = fleet.config()
    server = config.server("vpn01")
    assert server.transport == "http" and server.auth == "ntlm"
    fleet.clear_logs()
    assert fleet.cli("check", "vpn01", "--json").code == 0
    requests = fleet.server("vpn01").requests
    assert [r.action for r in requests[:3]] == ["auth", "auth", "auth"]  # the NTLM handshake
    assert all(r.action != "unencrypted" for r in requests)
    assert all(r.status == 200 for r in requests[3:])
