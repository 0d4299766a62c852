"""`sstp-bot fix` through the CLI: every fixable lab scenario is repaired; nothing runs without consent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from commands.lab.lab import Lab
from commands.lab.scenarios import load_scenario

from .conftest import SINGLE_SCENARIOS, LabSetup, cli_login, make_setup, run_cli
from .test_check import assert_check_contract

FIX_KEYS = {"server", "plan_id", "state", "steps", "before", "after"}
STEP_RESULT_KEYS = {"action", "ok", "changed", "detail"}

# Scenarios whose spec says the plan repairs them (and that have something to repair).
# Scenarios with a `fix_outcome` (RemoteAccess faults, DirectAccess) have their own tests (test_fix_faults.py).
GENERIC = [n for n in SINGLE_SCENARIOS if load_scenario(n).servers[0].fix_outcome is None]
FIXABLE = [n for n in GENERIC if load_scenario(n).servers[0].fixable and load_scenario(n).servers[0].expect]
NOTHING_TO_FIX = [n for n in SINGLE_SCENARIOS if not load_scenario(n).servers[0].expect]
UNFIXABLE = [n for n in SINGLE_SCENARIOS if load_scenario(n).servers[0].fixable is False]


def test_the_scenario_lists_are_not_empty():
    # Guards the parametrisations below against a scenario format change that would empty them.
    assert len(FIXABLE) >= 10 and "iis-binding" in FIXABLE
    assert "healthy" in NOTHING_TO_FIX
    assert {"foreign-process", "no-valid-certificate", "not-elevated", "error-events"} <= set(UNFIXABLE)


def serious(doc: dict) -> set[str]:
    return {f["id"] for f in doc["findings"] if f["severity"] in ("critical", "warning")}


@pytest.mark.parametrize("scenario", FIXABLE)
def test_fix_repairs_every_fixable_scenario(lab_factory, scenario: str):
    setup: LabSetup = lab_factory([scenario])
    name = setup.name_of(scenario)
    spec = setup.server(name).spec
    twin = setup.server(name).twin

    run = setup.cli("fix", name, "--yes", "--json")
    assert run.code == 0, (run.stdout, run.stderr)
    doc = run.json()
    assert set(doc) == FIX_KEYS, sorted(doc)
    assert doc["server"] == name and isinstance(doc["plan_id"], int)
    assert doc["state"] == "SUCCEEDED", run.stderr
    assert "error:" not in run.stderr

    before, after = doc["before"], doc["after"]
    assert_check_contract(before)
    assert_check_contract(after)
    assert before["status"] == "unhealthy" and set(spec.expect) <= {f["id"] for f in before["findings"]}
    planned = before["plan"]["steps"]
    assert [s["action"] for s in doc["steps"]] == [s["action"] for s in planned]
    for step in doc["steps"]:
        assert set(step) == STEP_RESULT_KEYS
        assert step["ok"] is True, step
        assert isinstance(step["changed"], bool) and isinstance(step["detail"], str)
    # The twin saw exactly the planned steps, in order, carried out by their primitives.
    assert twin.plan_actions() == [s["action"] for s in planned]
    for step in planned:
        if step["action"] == "bind_sstp_certificate":
            assert ("set_sstp_certificate", {"thumbprint": step["params"]["Thumbprint"]}) in twin.actions

    assert after["status"] == "healthy", serious(after)
    assert serious(after) == set() and after["plan"] is None and after["error"] is None

    # An independent re-check agrees, and the plan is recorded as it ran.
    recheck = setup.cli("check", name, "--json")
    assert recheck.code == 0 and recheck.json()["status"] == "healthy"
    plan = next(e for e in setup.cli("history", name, "--json").json() if e["kind"] == "plan")
    assert plan["id"] == doc["plan_id"] and plan["state"] == "SUCCEEDED"
    assert plan["requester"] == plan["approver"] == cli_login()
    assert [r["action"] for r in plan["step_results"]] == [s["action"] for s in planned]


@pytest.mark.parametrize("scenario", NOTHING_TO_FIX)
def test_fix_of_a_healthy_server_runs_nothing(lab_factory, scenario: str):
    setup: LabSetup = lab_factory([scenario])
    name = setup.name_of(scenario)
    run = setup.cli("fix", name, "--yes", "--json")
    assert run.code == 0
    doc = run.json()
    assert set(doc) == FIX_KEYS
    assert doc["plan_id"] is None and doc["state"] is None and doc["steps"] == [] and doc["after"] is None
    assert doc["before"]["status"] == "healthy"
    assert setup.server(name).twin.actions == []
    text = setup.cli("fix", name, "--yes")
    assert text.code == 0 and "Nothing to fix." in text.stdout


@pytest.fixture(scope="module")
def unfixable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabSetup]:
    with Lab(UNFIXABLE) as lab:
        yield make_setup(lab, tmp_path_factory.mktemp("unfixable"))


@pytest.mark.parametrize("scenario", UNFIXABLE)
def test_fix_of_an_unfixable_scenario_runs_nothing(unfixable: LabSetup, scenario: str):
    name = unfixable.name_of(scenario)
    server = unfixable.server(name)
    before = server.twin.copy_state()
    server.endpoint.clear_log()
    run = unfixable.cli("fix", name, "--yes", "--json")
    assert run.code == 1, (run.stdout, run.stderr)
    doc = run.json()
    assert set(doc) == FIX_KEYS
    assert doc["plan_id"] is None and doc["state"] is None and doc["steps"] == [] and doc["after"] is None
    assert doc["before"]["status"] == "unhealthy" and doc["before"]["plan"] is None
    assert set(server.spec.expect) <= {f["id"] for f in doc["before"]["findings"]}
    # One probe, no fix script: one Command in the request log, and the twin untouched.
    assert [r.action for r in server.requests].count("Command") == 1
    assert server.twin.actions == [] and server.twin.copy_state() == before
    text = unfixable.cli("fix", name, "--yes")
    # One message saying so, not two (the report's own, and "nothing to fix")
    assert text.code == 1 and text.stdout.count("No automatic fix: see the findings") == 1 and "othing to fix" not in text.stdout


def _only_probe_ran(setup: LabSetup, name: str) -> None:
    assert setup.server(name).twin.actions == []
    assert setup.actions(name)["Command"] == 1  # the check's probe, nothing else


def test_fix_without_yes_on_a_pipe_is_refused_before_anything_connects(lab_factory):
    setup: LabSetup = lab_factory(["iis-binding"])
    setup.clear_logs()
    run = setup.cli("fix", "vpn-iis", "--json", stdin="y\n")  # not a terminal: the "y" is not an answer
    assert run.code == 3 and run.stdout == ""
    assert "--yes" in run.stderr
    assert setup.server("vpn-iis").requests == [] and setup.server("vpn-iis").twin.actions == []
    assert setup.cli("history", "vpn-iis", "--json").json() == []  # nothing checked, nothing proposed


@pytest.mark.parametrize("answer", ["n\n", "\n", "no\n", ""])
def test_interactive_no_runs_nothing(lab_factory, answer: str):
    setup: LabSetup = lab_factory(["iis-binding"])
    setup.clear_logs()
    run = setup.cli("fix", "vpn-iis", stdin=answer, interactive=True)
    assert run.code == 1
    assert "[y/N]" in run.stdout and "Not run" in run.stdout
    _only_probe_ran(setup, "vpn-iis")
    [plan] = [e for e in setup.cli("history", "vpn-iis", "--json").json() if e["kind"] == "plan"]
    assert plan["state"] == "REJECTED"


@pytest.mark.parametrize("answer", ["y\n", "YES\n"])
def test_interactive_yes_runs_the_plan(lab_factory, answer: str):
    setup: LabSetup = lab_factory(["iis-binding"])
    run = setup.cli("fix", "vpn-iis", stdin=answer, interactive=True)
    assert run.code == 0, (run.stdout, run.stderr)
    out = run.stdout
    assert "[y/N]" in out
    assert "[1/5]" in out and "[5/5]" in out  # progress, one line per step
    assert "Re-check:" in out and "HEALTHY" in out.split("Re-check:")[1]
    assert "SUCCEEDED" in out
    assert setup.server("vpn-iis").twin.plan_actions()[-1] == "bind_sstp_certificate"


def test_fix_json_progress_goes_to_stderr(lab_factory):
    setup: LabSetup = lab_factory(["remoteaccess-stopped"])
    run = setup.cli("fix", "vpn-stopped", "--yes", "--json")
    assert run.code == 0
    assert run.json()["state"] == "SUCCEEDED"  # stdout is exactly one JSON document
    assert "[1/1]" in run.stderr


def test_fix_of_an_unknown_server_connects_nowhere(lab_factory):
    setup: LabSetup = lab_factory(["iis-binding"])
    setup.clear_logs()
    run = setup.cli("fix", "nope", "--yes", "--json")
    assert run.code == 2 and "nope" in run.stderr
    assert setup.total_requests() == 0


def test_fix_usage(lab_factory):
    setup: LabSetup = lab_factory(["iis-binding"])
    setup.clear_logs()
    assert setup.cli("fix").code == 3
    assert setup.cli("fix", "vpn-iis", "vpn-healthy").code == 3
    assert setup.total_requests() == 0


def test_a_failing_step_stops_the_plan_and_the_server_is_rechecked(lab_factory, monkeypatch):
    """The third step fails on the server: steps 4-5 never run, the plan is FAILED, the re-check shows why."""
    setup: LabSetup = lab_factory(["iis-binding"])
    twin = setup.server("vpn-iis").twin

    def refuse(endpoint: str) -> dict:
        # What delete_httpsys_binding.ps1 reports when netsh fails (exit code 87).
        detail = f"netsh http delete sslcert ipport={endpoint}: The parameter is incorrect. (lab)"
        return {"ok": False, "changed": False, "detail": detail, "exit_code": 87}

    monkeypatch.setattr(twin, "delete_httpsys_binding", refuse)
    run = setup.cli("fix", "vpn-iis", "--yes", "--json")
    assert run.code == 1, (run.stdout, run.stderr)
    doc = run.json()
    assert doc["state"] == "FAILED"
    assert [(s["action"], s["ok"]) for s in doc["steps"]] == [
        ("remove_iis_binding", True), ("restart_iis", True), ("delete_httpsys_binding", False)]
    assert "The parameter is incorrect" in doc["steps"][-1]["detail"]
    assert "Step 3 (delete_httpsys_binding) failed" in run.stderr
    assert [a for a, _ in twin.actions] == ["remove_iis_binding", "restart_iis"]  # nothing after the failure
    assert doc["after"]["status"] == "unhealthy" and "SSTP_HASH_MISMATCH" in serious(doc["after"])
    trail = setup.cli("history", "--plan", str(doc["plan_id"]), "--json").json()
    assert [(e["action"], e["outcome"]) for e in trail][-4:] == [
        ("step", "ok"), ("step", "ok"), ("step", "failed"), ("fail", "ok")]


def test_config_path_from_the_environment(lab_factory):
    setup: LabSetup = lab_factory(["remoteaccess-stopped"])
    run = run_cli(["fix", "vpn-stopped", "--yes", "--json"], environ={"SSTP_BOT_CONFIG": str(setup.config_path)})
    assert run.code == 0 and run.json()["state"] == "SUCCEEDED"
