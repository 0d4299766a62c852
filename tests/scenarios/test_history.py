"""`sstp-bot history` after a real check and fix of a lab server: who, when, and the plan's audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from commands.model import format_time

from .conftest import FakeClock, LabSetup, cli_login

HISTORY_CHECK_KEYS = {"kind", "at", "server", "id", "actor", "source", "status", "started_at", "finished_at",
                      "duration_ms", "error", "findings", "plan_id", "snapshot_hash"}
HISTORY_PLAN_KEYS = {"kind", "at", "server", "id", "check_id", "state", "requester", "approver", "source",
                     "created_at", "expires_at", "decided_at", "finished_at", "fingerprint", "steps", "step_results"}
AUDIT_KEYS = {"id", "at", "actor", "action", "outcome", "server", "plan_id", "details"}


@pytest.fixture
def checked_and_fixed(lab_factory):
    """vpn-iis checked from T1, fixed from T2 = T1 + 3 minutes (one CLI command each).

    The clock ticks one second per reading, so every record has its own time, as in real life.
    """
    setup: LabSetup = lab_factory(["iis-binding", "healthy"])
    clock = FakeClock(tick=1)
    t1 = clock.now
    check = setup.cli("check", "vpn-iis", "--json", clock=clock)
    assert check.code == 1
    t2 = clock.advance(minutes=3)
    fix = setup.cli("fix", "vpn-iis", "--yes", "--json", clock=clock)
    assert fix.code == 0 and fix.json()["state"] == "SUCCEEDED"
    clock.advance(minutes=1)
    return setup, clock, t1, t2, fix.json()


def parse_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _between(moment: str, start, end) -> bool:
    return format_time(start) <= moment <= format_time(end)


def test_history_table_shows_check_and_fix_with_who_and_when(checked_and_fixed):
    setup, clock, t1, t2, fix = checked_and_fixed
    run = setup.cli("history", "vpn-iis", clock=clock)
    assert run.code == 0
    out = run.stdout
    who = cli_login()
    assert out.count(who) >= 4  # every check and plan names its requester
    entries = setup.cli("history", "vpn-iis", "--json").json()
    for entry in entries:  # every line shows when it happened
        assert entry["at"].replace("T", " ").rstrip("Z") in out
    assert sum(_between(e["at"], t1, t2) for e in entries) == 2  # the first check and its plan
    assert sum(_between(e["at"], t2, clock.now) for e in entries) == 3  # the fix
    assert f"plan #{fix['plan_id']}" in out and "SUCCEEDED" in out
    assert f"approved by {who}" in out and "5/5 steps ok" in out
    assert "healthy" in out and "unhealthy" in out
    assert "SUPERSEDED" in out  # the first check's proposal, superseded by the fix's own check
    assert "vpn-healthy" not in out


def test_history_json_shape_and_order(checked_and_fixed):
    setup, clock, t1, t2, fix = checked_and_fixed
    run = setup.cli("history", "vpn-iis", "--json", clock=clock)
    assert run.code == 0
    entries = run.json()
    assert isinstance(entries, list)
    for e in entries:
        assert e["server"] == "vpn-iis"
        assert set(e) == (HISTORY_CHECK_KEYS if e["kind"] == "check" else HISTORY_PLAN_KEYS), sorted(e)
    summary = [(e["kind"], e.get("status") or e.get("state")) for e in entries]
    # Newest first: the fix's re-check, the plan it ran, the fix's own check, the first check's
    # plan (superseded), the first check.
    assert summary == [
        ("check", "healthy"),
        ("plan", "SUCCEEDED"),
        ("check", "unhealthy"),
        ("plan", "SUPERSEDED"),
        ("check", "unhealthy"),
    ]
    times = [e["at"] for e in entries]
    assert times == sorted(times, reverse=True) and len(set(times)) == len(times)
    assert all(_between(t, t2, clock.now) for t in times[:3])
    assert all(_between(t, t1, t2) for t in times[3:])
    who = cli_login()
    for e in entries:
        assert (e.get("actor") or e.get("requester")) == who and e["source"] == "cli"
    plan = entries[1]
    assert plan["id"] == fix["plan_id"] and plan["approver"] == who
    assert _between(plan["created_at"], t2, clock.now)
    assert plan["created_at"] < plan["decided_at"] < plan["finished_at"]
    assert plan["expires_at"] == format_time(parse_time(plan["created_at"]) + timedelta(minutes=15))
    assert [r["ok"] for r in plan["step_results"]] == [True] * 5
    assert entries[2]["plan_id"] == fix["plan_id"]
    assert entries[0]["findings"] == [] and entries[0]["snapshot_hash"]
    assert {f["id"] for f in entries[4]["findings"]} >= {"SSTP_HASH_MISMATCH", "IIS_HTTPS_BINDING"}

    limited = setup.cli("history", "vpn-iis", "--json", "--limit", "2").json()
    assert limited == entries[:2]
    everything = setup.cli("history", "--json").json()
    assert {e["server"] for e in everything} == {"vpn-iis"}  # vpn-healthy was never checked


def test_plan_audit_trail(checked_and_fixed):
    setup, clock, _, t2, fix = checked_and_fixed
    plan_id = fix["plan_id"]
    run = setup.cli("history", "--plan", str(plan_id), "--json")
    assert run.code == 0
    trail = run.json()
    for event in trail:
        assert set(event) == AUDIT_KEYS and event["plan_id"] == plan_id and event["server"] == "vpn-iis"
    assert [e["action"] for e in trail] == ["propose", "approve", "start", *["step"] * 5, "succeed"]
    assert all(e["outcome"] == "ok" for e in trail)
    who = cli_login()
    assert [e["actor"] for e in trail if e["action"] in ("propose", "approve", "start", "succeed")] == [who] * 4
    assert [e["details"]["action"] for e in trail if e["action"] == "step"] == [s["action"] for s in fix["steps"]]
    assert all(_between(e["at"], t2, clock.now) for e in trail)
    assert [e["at"] for e in trail] == sorted(e["at"] for e in trail)

    text = setup.cli("history", "--plan", str(plan_id))
    assert text.code == 0
    assert f"Plan {plan_id} for vpn-iis: SUCCEEDED, requested by {who}" in text.stdout
    for action in ("propose", "approve", "start", "step", "succeed"):
        assert action in text.stdout


def test_superseded_plan_trail(checked_and_fixed):
    setup = checked_and_fixed[0]
    first = next(e for e in setup.cli("history", "vpn-iis", "--json").json() if e.get("state") == "SUPERSEDED")
    trail = setup.cli("history", "--plan", str(first["id"]), "--json").json()
    assert [e["action"] for e in trail] == ["propose", "supersede"]
    assert trail[-1]["actor"] == "system"


def test_unknown_plan_is_a_clear_error(checked_and_fixed):
    setup = checked_and_fixed[0]
    for argv in (["history", "--plan", "99999"], ["history", "--plan", "99999", "--json"]):
        run = setup.cli(*argv)
        assert run.code == 2
        assert "plan 99999 not found" in run.stderr
        assert run.stdout == ""


def test_history_usage_errors(checked_and_fixed):
    setup = checked_and_fixed[0]
    assert setup.cli("history", "vpn-iis", "--plan", "1").code == 3
    assert setup.cli("history", "--limit", "0").code == 3
    assert setup.cli("history", "--plan", "abc").code == 3


def test_history_of_a_server_never_checked(checked_and_fixed):
    setup = checked_and_fixed[0]
    run = setup.cli("history", "vpn-healthy")
    assert run.code == 0 and "No history for vpn-healthy." in run.stdout
    assert setup.cli("history", "vpn-healthy", "--json").json() == []


def test_times_follow_the_clock_not_the_wall(lab_factory):
    """The CLI's clock is the one written: a check at a chosen time is recorded at that time."""
    setup: LabSetup = lab_factory(["healthy"])
    clock = FakeClock()
    clock.advance(days=2, hours=3)
    assert setup.cli("check", "vpn-healthy", "--json", clock=clock).code == 0
    [entry] = setup.cli("history", "vpn-healthy", "--json").json()
    assert entry["at"] == format_time(clock()) and entry["duration_ms"] == 0
