"""SSTP_ERROR_EVENTS counts only events of the current Remote Access run (DOMAIN 9: "no new RasSstp
8/9/13/18/21 since the restart"), using the optional `services.RemoteAccess.started_at` of snapshot v1.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from commands.diagnosis import diagnose
from commands.errors import SnapshotError
from commands.remediation import fingerprint
from commands.snapshot import parse_snapshot
from tests.engine.builder import NOW, Snap, healthy, only, problems, server


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_events(*ages: timedelta, event_id: int = 21, provider: str = "Microsoft-Windows-RasSstp") -> Snap:
    snap = healthy()
    for age in ages:
        snap["events"].append(
            {"provider": provider, "id": event_id, "time": _iso(NOW - age), "message": "SSTP event"}
        )
    return snap


def _started(snap: Snap, value: Any, service: str = "RemoteAccess") -> Snap:
    snap["services"][service]["started_at"] = value
    return snap


def _findings(snap: Snap) -> list[Any]:
    return diagnose(parse_snapshot(snap), server(), NOW)


# --- positive: events after the start count --------------------------------------------------------


def test_events_after_the_restart_are_counted_and_older_ones_reported_as_ignored() -> None:
    snap = _started(_with_events(timedelta(hours=3), timedelta(minutes=30), timedelta(minutes=5)),
                    _iso(NOW - timedelta(hours=1)))
    finding = only(_findings(snap), "SSTP_ERROR_EVENTS")
    assert finding.severity == "warning"
    assert finding.evidence["count"] == 2
    assert [e["time"] for e in finding.evidence["events"]] == [_iso(NOW - timedelta(minutes=5)),
                                                              _iso(NOW - timedelta(minutes=30))]
    assert finding.evidence["ignored_before_start"] == 1
    assert finding.evidence["remoteaccess_started_at"] == "2026-11-25T11:00:00Z"
    assert "since Remote Access started at 2026-11-25T11:00:00Z" in finding.title
    assert "1 older event(s)" in finding.detail and "2026-11-25T11:00:00Z" in finding.detail


def test_an_event_at_the_start_second_belongs_to_the_new_run() -> None:
    snap = _started(_with_events(timedelta(minutes=10)), _iso(NOW - timedelta(minutes=10)))
    assert only(_findings(snap), "SSTP_ERROR_EVENTS").evidence["count"] == 1


def test_a_start_older_than_the_window_changes_nothing_but_the_evidence() -> None:
    snap = _started(_with_events(timedelta(hours=2), timedelta(hours=30)), _iso(NOW - timedelta(days=3)))
    finding = only(_findings(snap), "SSTP_ERROR_EVENTS")
    assert finding.evidence["count"] == 1  # the 30-hour-old event is outside the 24-hour window
    assert finding.evidence["ignored_before_start"] == 0
    assert "in the last 24 hours" in finding.title


def test_schannel_events_follow_the_same_rule() -> None:
    snap = _started(_with_events(timedelta(minutes=5), timedelta(hours=2), event_id=36870, provider="Schannel"),
                    _iso(NOW - timedelta(hours=1)))
    finding = only(_findings(snap), "SSTP_ERROR_EVENTS")
    assert finding.evidence["count"] == 1 and finding.evidence["ignored_before_start"] == 1


# --- near misses: events before the start are ignored -----------------------------------------------


def test_events_before_the_restart_are_ignored() -> None:
    snap = _started(_with_events(timedelta(hours=3), timedelta(hours=2)), _iso(NOW - timedelta(hours=1)))
    findings = _findings(snap)
    assert "SSTP_ERROR_EVENTS" not in {f.id for f in findings}
    assert problems(findings) == set()


def test_an_event_one_second_before_the_start_is_ignored() -> None:
    snap = _started(_with_events(timedelta(minutes=10, seconds=1)), _iso(NOW - timedelta(minutes=10)))
    assert "SSTP_ERROR_EVENTS" not in {f.id for f in _findings(snap)}


def test_only_remote_access_start_time_matters() -> None:
    # SstpSvc started after the events, RemoteAccess before: the events belong to the current run.
    snap = _started(_with_events(timedelta(hours=2)), _iso(NOW - timedelta(hours=1)), service="SstpSvc")
    _started(snap, _iso(NOW - timedelta(hours=5)))
    assert only(_findings(snap), "SSTP_ERROR_EVENTS").evidence["count"] == 1


# --- without started_at: exactly today's behaviour -----------------------------------------------


@pytest.mark.parametrize("started", ["absent", None])
def test_without_started_at_every_event_of_the_window_counts(started: Any) -> None:
    snap = _with_events(timedelta(hours=3), timedelta(minutes=5))
    if started != "absent":
        _started(snap, started)
    finding = only(_findings(snap), "SSTP_ERROR_EVENTS")
    assert finding.evidence["count"] == 2
    assert set(finding.evidence) == {"events", "count"}  # no new evidence keys
    assert finding.title == "2 SSTP/Schannel error event(s) in the last 24 hours (IDs 21)"


def test_started_at_of_a_missing_remote_access_service_is_not_needed() -> None:
    snap = _with_events(timedelta(minutes=5))
    snap["services"]["RemoteAccess"] = None
    snap["listeners"] = []
    assert only(_findings(snap), "SSTP_ERROR_EVENTS").evidence["count"] == 1


# --- parsing ------------------------------------------------------------------------------------------


def test_started_at_is_parsed_as_utc() -> None:
    snap = _started(healthy(), "2026-11-25T12:30:00+01:00")
    ra = parse_snapshot(snap).service("RemoteAccess")
    assert ra is not None and ra.started_at == datetime(2026, 11, 25, 11, 30, tzinfo=UTC)
    sstp_svc = parse_snapshot(_started(healthy(), "2026-11-25T09:00:00.1234567Z", "SstpSvc")).service("SstpSvc")
    assert sstp_svc is not None and sstp_svc.started_at == datetime(2026, 11, 25, 9, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize("started", ["absent", None])
def test_absent_or_null_started_at_is_unknown(started: Any) -> None:
    snap = healthy()
    if started != "absent":
        _started(snap, started)
    ra = parse_snapshot(snap).service("RemoteAccess")
    assert ra is not None and ra.started_at is None


@pytest.mark.parametrize("value", ["yesterday", "", 1764072000, True, {"time": "2026-11-25T11:00:00Z"}])
@pytest.mark.parametrize("service", ["RemoteAccess", "SstpSvc"])
def test_malformed_started_at_names_the_field(service: str, value: Any) -> None:
    with pytest.raises(SnapshotError) as info:
        parse_snapshot(_started(healthy(), value, service))
    assert info.value.field == f"services.{service}.started_at"
    assert f"services.{service}.started_at" in str(info.value)


def test_started_at_is_not_part_of_the_plan_fingerprint() -> None:
    # A restart alone does not change what a plan depends on (like collection time and events).
    before = json.dumps(healthy())
    after = json.dumps(_started(healthy(), _iso(NOW - timedelta(minutes=1))))
    assert fingerprint(before) == fingerprint(after)


# --- the window ends when the probe ran (the server's clock), not when the snapshot is analysed -------


def test_a_saved_snapshot_judges_its_events_against_its_own_collection_time() -> None:
    snap = _with_events(timedelta(minutes=2), timedelta(hours=25))  # relative to collected_at (NOW)
    five_days_later = NOW + timedelta(days=5)
    findings = diagnose(parse_snapshot(snap), server(), five_days_later)
    finding = only(findings, "SSTP_ERROR_EVENTS")
    assert finding.evidence["count"] == 1  # the event 25 h before the probe is outside the window
    assert finding.evidence["events"][0]["time"] == _iso(NOW - timedelta(minutes=2))


def test_an_event_older_than_24_hours_before_the_probe_is_not_counted() -> None:
    snap = _with_events(timedelta(hours=24, minutes=1))
    assert "SSTP_ERROR_EVENTS" not in problems(_findings(snap))
