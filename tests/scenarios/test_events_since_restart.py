"""Error events logged before a fix do not keep the server unhealthy after it (DOMAIN 9: "no new RasSstp
8/9/13/18/21 since the restart"): the fix restarts Remote Access, the probe reports the new start time,
and the re-check counts only what happened since.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .conftest import LabSetup


def _ids(doc: dict) -> set[str]:
    return {f["id"] for f in doc["findings"] if f["severity"] in ("critical", "warning")}


def _event_now() -> dict:
    return {
        "provider": "Microsoft-Windows-RasSstp",
        "id": 21,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "message": "The SSTP service could not get the hash of the certificate configured with HTTP.",
    }


def test_fix_is_healthy_although_error_events_predate_it(lab_factory):
    setup: LabSetup = lab_factory(["events-before-fix"])
    twin = setup.server("vpn-iis-events").twin
    started_before = twin.state.services["RemoteAccess"].started_at  # type: ignore[union-attr]

    run = setup.cli("fix", "vpn-iis-events", "--yes", "--json")
    assert run.code == 0, (run.stdout, run.stderr)
    doc = run.json()
    assert doc["state"] == "SUCCEEDED", run.stderr

    before, after = doc["before"], doc["after"]
    assert before["status"] == "unhealthy"
    assert {"SSTP_HASH_MISMATCH", "IIS_HTTPS_BINDING", "SSTP_ERROR_EVENTS"} <= _ids(before)
    events = next(f for f in before["findings"] if f["id"] == "SSTP_ERROR_EVENTS")
    assert events["evidence"]["count"] == 2 and events["evidence"]["ignored_before_start"] == 0

    assert after["status"] == "healthy", _ids(after)
    assert "SSTP_ERROR_EVENTS" not in {f["id"] for f in after["findings"]}
    # The events are still in the log (the probe still reports them); they are older than the restart.
    started_after = twin.state.services["RemoteAccess"].started_at  # type: ignore[union-attr]
    assert started_before is not None and started_after is not None and started_after > started_before
    assert len(twin.probe()["events"]) == 2

    recheck = setup.cli("check", "vpn-iis-events", "--json")
    assert recheck.code == 0 and recheck.json()["status"] == "healthy"


def test_an_error_event_after_the_fix_makes_the_server_unhealthy_again(lab_factory):
    setup: LabSetup = lab_factory(["events-before-fix"])
    twin = setup.server("vpn-iis-events").twin
    assert setup.cli("fix", "vpn-iis-events", "--yes", "--json").code == 0

    with twin.lock:
        twin.state.events.append(_event_now())
    run = setup.cli("check", "vpn-iis-events", "--json")
    assert run.code == 1, (run.stdout, run.stderr)
    doc = run.json()
    assert _ids(doc) == {"SSTP_ERROR_EVENTS"}
    events = next(f for f in doc["findings"] if f["id"] == "SSTP_ERROR_EVENTS")
    assert events["evidence"]["count"] == 1 and events["evidence"]["ignored_before_start"] == 2
    assert events["evidence"]["remoteaccess_started_at"] == twin.probe()["services"]["RemoteAccess"]["started_at"]


def test_events_after_the_last_start_still_count_without_a_fix(lab_factory):
    # The error-events scenario: Remote Access started days ago, the errors are recent.
    setup: LabSetup = lab_factory(["error-events"])
    run = setup.cli("check", "vpn-events", "--json")
    assert run.code == 1
    doc = run.json()
    assert _ids(doc) == {"SSTP_ERROR_EVENTS"}
    events = next(f for f in doc["findings"] if f["id"] == "SSTP_ERROR_EVENTS")
    assert events["evidence"]["count"] == 2 and events["evidence"]["ignored_before_start"] == 0
