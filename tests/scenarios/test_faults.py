"""Lab faults through `check --json` (CLI + service + storage), not at runner level (tests/remote does that)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from commands.lab.lab import FAULTS, LAB_PASSWORD, WRONG_PASSWORD, Lab

from .conftest import LabSetup, make_setup
from .test_check import assert_check_contract

# Through the CLI: the faults that fail on the first request or script (tests/remote covers them all).
FAULT_KINDS = {fault: kind for fault, kind in FAULTS.items() if kind is not None and fault not in ("error_stream", "hang")}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabSetup]:
    faults = {f"f-{name}": [name] for name in [*FAULT_KINDS, "not_elevated"]}
    # Every faulty server has the classic IIS binding error: a working probe would propose a plan.
    extra = [(name, "iis-binding") for name in faults]
    with Lab(["healthy"], faults=faults, extra_servers=extra) as lab:
        yield make_setup(lab, tmp_path_factory.mktemp("faults"))


@pytest.mark.parametrize("fault,kind", sorted(FAULT_KINDS.items()))
def test_fault_becomes_its_error_kind(faulty: LabSetup, fault: str, kind: str):
    name = f"f-{fault}"
    twin = faulty.server(name).twin
    before = twin.copy_state()
    run = faulty.cli("check", name, "--json")
    assert run.code == 2, (run.stdout, run.stderr)
    doc = run.json()
    assert_check_contract(doc)
    assert doc["server"] == name
    assert doc["status"] == "error"
    assert doc["error"]["kind"] == kind, doc["error"]
    assert doc["findings"] == [] and doc["plan"] is None
    for secret in (LAB_PASSWORD, WRONG_PASSWORD):
        assert secret not in run.stdout + run.stderr
    # Nothing on the server changed.
    assert twin.copy_state() == before and twin.actions == []
    # The error is recorded: history shows the failed check with its kind, and no plan.
    history = faulty.cli("history", name, "--json", "--limit", "1").json()
    assert history[0]["kind"] == "check" and history[0]["status"] == "error"
    assert history[0]["error"]["kind"] == kind
    assert history[0]["plan_id"] is None and history[0]["snapshot_hash"] is None


def test_script_failure_carries_the_powershell_error_message(faulty: LabSetup):
    doc = faulty.cli("check", "f-script_error", "--json").json()
    assert "The RPC server is unavailable" in doc["error"]["message"]


def test_readable_error_report(faulty: LabSetup):
    run = faulty.cli("check", "f-refused")
    assert run.code == 2
    assert "f-refused" in run.stdout and "COULD NOT CHECK" in run.stdout and "unreachable" in run.stdout


def test_not_elevated_is_a_finding_not_an_error(faulty: LabSetup):
    run = faulty.cli("check", "f-not_elevated", "--json")
    assert run.code == 1, run.stderr
    doc = run.json()
    assert_check_contract(doc)
    assert doc["status"] == "unhealthy" and doc["error"] is None
    ids = {f["id"] for f in doc["findings"]}
    assert "NOT_ELEVATED" in ids and "SSTP_HASH_MISMATCH" in ids
    not_elevated = next(f for f in doc["findings"] if f["id"] == "NOT_ELEVATED")
    assert not_elevated["severity"] == "critical" and not_elevated["fixable"] is False
    assert doc["plan"] is None  # nothing can run without elevation


def test_fleet_with_servers_that_cannot_be_checked_exits_2(faulty: LabSetup):
    run = faulty.cli("check", "--all", "--json")
    docs = run.json()
    assert isinstance(docs, list) and len(docs) == len(faulty.lab.servers)
    assert run.code == 2
    kinds = {d["server"]: (d["error"] or {}).get("kind") for d in docs}
    assert kinds["vpn-healthy"] is None
    for fault, kind in FAULT_KINDS.items():
        assert kinds[f"f-{fault}"] == kind
    # Errors on some servers do not hide the results of the others.
    assert next(d for d in docs if d["server"] == "vpn-healthy")["status"] == "healthy"


def test_unhealthy_but_no_error_fleet_exits_1(faulty: LabSetup):
    run = faulty.cli("check", "vpn-healthy", "f-not_elevated", "--json")
    assert run.code == 1
    assert [d["status"] for d in run.json()] == ["healthy", "unhealthy"]


@pytest.mark.parametrize("fault", ["refused", "script_error", "bad_json"])
def test_fix_of_a_server_that_cannot_be_checked_runs_nothing(faulty: LabSetup, fault: str):
    name = f"f-{fault}"
    twin = faulty.server(name).twin
    run = faulty.cli("fix", name, "--yes", "--json")
    assert run.code == 2
    doc = json.loads(run.stdout)
    assert doc["plan_id"] is None and doc["state"] is None and doc["steps"] == []
    assert doc["before"]["error"]["kind"] == FAULT_KINDS[fault]
    assert twin.actions == []


def test_fix_without_elevation_runs_nothing(faulty: LabSetup):
    server = faulty.server("f-not_elevated")
    server.endpoint.clear_log()
    run = faulty.cli("fix", "f-not_elevated", "--yes", "--json")
    assert run.code == 1
    doc = run.json()
    assert doc["plan_id"] is None and doc["steps"] == [] and doc["after"] is None
    assert server.twin.actions == []
    assert [r.action for r in server.requests].count("Command") == 1  # the probe only
