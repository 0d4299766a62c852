"""Checks, snapshot dedup and pruning, history and fleet status."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from commands.errors import PlanStateError
from storage import NotFound, PlanState, Repository
from storage.engine import build_engine
from storage.models import AuditRow, SnapshotRow
from storage.snapshots import snapshot_hash

from .conftest import FINDINGS, FakeClock, add_check, add_plan, sample_snapshot


def _count(db_url: str, what: object) -> int:
    engine = build_engine(db_url)
    with engine.connect() as conn:
        value = conn.execute(what).scalar_one()  # type: ignore[call-overload]
    engine.dispose()
    return int(value)


def test_record_and_read_a_check(repo: Repository, clock: FakeClock) -> None:
    check_id = add_check(repo, clock, snapshot=sample_snapshot())
    check = repo.get_check(check_id)
    assert (check.server, check.actor, check.source, check.status) == ("vpn01", "U0AAAA1", "slack", "unhealthy")
    assert check.finished_at == clock() and check.finished_at.tzinfo is not None
    assert check.duration_ms == 2000
    assert check.findings == FINDINGS
    assert check.plan_id is None
    assert check.snapshot_hash == snapshot_hash(sample_snapshot())
    stored = repo.get_snapshot(check.snapshot_hash or "")
    assert stored is not None and stored["host"]["computer_name"] == "VPN01"
    assert "collected_at" not in stored and "vpn_connections" not in stored
    assert repo.get_snapshot("0" * 64) is None
    with pytest.raises(NotFound, match="check 999 not found"):
        repo.get_check(999)


def test_a_hundred_identical_checks_store_one_snapshot(repo: Repository, clock: FakeClock, db_url: str) -> None:
    hashes = set()
    for n in range(100):
        clock.advance(hours=6)
        snap = sample_snapshot(collected_at=clock().isoformat(), vpn_connections=n)
        snap["client_view"] = {"endpoint": "vpn01.example.com:443", "collected_at": clock().isoformat(),
                               "handshakes": [], "sstp": None}
        hashes.add(repo.get_check(add_check(repo, clock, snapshot=snap)).snapshot_hash)
    assert len(hashes) == 1
    assert _count(db_url, select(func.count()).select_from(SnapshotRow)) == 1
    stored = repo.get_snapshot(hashes.pop() or "")
    assert stored is not None and stored["client_view"] == {"endpoint": "vpn01.example.com:443", "handshakes": [],
                                                            "sstp": None}
    add_check(repo, clock, snapshot=sample_snapshot(iis_cert="CD" * 20))  # a real change
    assert _count(db_url, select(func.count()).select_from(SnapshotRow)) == 2


def test_prune_drops_old_bodies_and_keeps_findings_and_audit(
    repo: Repository, clock: FakeClock, db_url: str
) -> None:
    old_snapshot, new_snapshot = sample_snapshot(iis_cert="CD" * 20), sample_snapshot()
    old_check = add_check(repo, clock, snapshot=old_snapshot)
    plan_id = repo.create_plan(check_id=old_check, server="vpn01", steps=[], fingerprint="F",
                               requester="U0AAAA1", source="slack", ttl=timedelta(minutes=15))
    shared = add_check(repo, clock, "vpn02", snapshot=new_snapshot)
    clock.advance(days=40)
    recent = add_check(repo, clock, "vpn03", snapshot=new_snapshot)  # keeps the shared body alive
    audit_before = _count(db_url, select(func.count()).select_from(AuditRow))

    assert repo.prune_snapshots(30) == 1
    assert repo.prune_snapshots(30) == 0
    assert repo.get_snapshot(snapshot_hash(old_snapshot)) is None
    assert repo.get_snapshot(snapshot_hash(new_snapshot)) is not None
    assert repo.get_check(old_check).findings == FINDINGS  # findings kept
    assert repo.get_check(old_check).snapshot_hash == snapshot_hash(old_snapshot)
    assert repo.get_check(shared).snapshot_hash == repo.get_check(recent).snapshot_hash
    assert _count(db_url, select(func.count()).select_from(AuditRow)) == audit_before
    assert [e.action for e in repo.plan_audit(plan_id)] == ["propose"]

    add_check(repo, clock, snapshot=old_snapshot)  # the same state again: the body is stored again
    assert repo.get_snapshot(snapshot_hash(old_snapshot)) is not None
    assert repo.prune_snapshots(0) == 0  # everything is referenced by a check of "today"
    with pytest.raises(ValueError, match="0 or more"):
        repo.prune_snapshots(-1)


def test_history_newest_first_with_plans(repo: Repository, clock: FakeClock) -> None:
    first = add_check(repo, clock)
    clock.advance(minutes=1)
    plan_id = add_plan(repo, clock)  # a check and its plan
    clock.advance(minutes=1)
    add_check(repo, clock, "vpn02", status="healthy", findings=[])
    clock.advance(minutes=1)
    last = add_check(repo, clock)

    plan_check = repo.get_plan(plan_id).check_id
    entries = repo.history("vpn01")
    assert [(e.kind, e.check.id if e.check else e.plan.id if e.plan else None) for e in entries] == [
        ("check", last), ("plan", plan_id), ("check", plan_check), ("check", first)]
    # The later check of vpn01 superseded the proposal (DESIGN 6); vpn02's check did not.
    assert entries[1].plan is not None and entries[1].plan.state == "SUPERSEDED"
    assert entries[2].check is not None and entries[2].check.plan_id == plan_id
    assert [e.server for e in repo.history()] == ["vpn01", "vpn02", "vpn01", "vpn01", "vpn01"]
    assert len(repo.history(limit=2)) == 2
    assert repo.history("ghost") == []
    with pytest.raises(ValueError):
        repo.history(limit=0)


def test_latest_check_per_server(repo: Repository, clock: FakeClock) -> None:
    assert repo.latest_checks() == []
    for server in ("vpn03", "vpn01", "vpn02"):
        add_check(repo, clock, server)
    clock.advance(hours=1)
    newest = add_check(repo, clock, "vpn01", status="healthy", findings=[])
    # recorded later but finished earlier (a slow check): not the latest
    repo.record_check(server="vpn01", actor="U1", source="schedule", started_at=clock() - timedelta(minutes=50),
                      finished_at=clock() - timedelta(minutes=30), status="error", findings=[],
                      error_kind="timeout", error_message="timed out")
    latest = repo.latest_checks()
    assert [c.server for c in latest] == ["vpn01", "vpn02", "vpn03"]
    assert latest[0].id == newest and latest[0].status == "healthy"


def test_plan_message_and_step_results(repo: Repository, clock: FakeClock) -> None:
    plan_id = add_plan(repo, clock)
    repo.set_plan_message(plan_id, "C0123ABCD", "1732536000.000100")
    repo.transition(plan_id, PlanState.PROPOSED, PlanState.APPROVED, actor="U0BBBB2")
    repo.transition(plan_id, PlanState.APPROVED, PlanState.RUNNING, actor="system")
    for n in range(3):
        repo.record_step_result(plan_id, {"action": f"step{n}", "ok": n != 2, "changed": True, "detail": "d"})
    plan = repo.get_plan(plan_id)
    assert (plan.channel, plan.message_ts) == ("C0123ABCD", "1732536000.000100")
    assert [r["action"] for r in plan.step_results] == ["step0", "step1", "step2"]
    assert [e.outcome for e in repo.plan_audit(plan_id) if e.action == "step"] == ["ok", "ok", "failed"]
    with pytest.raises(NotFound):
        repo.set_plan_message(999, "C1", "1")
    with pytest.raises(NotFound):
        repo.record_step_result(999, {})
    with pytest.raises(NotFound):
        repo.create_plan(check_id=999, server="vpn01", steps=[], fingerprint="F", requester="U1",
                         source="cli", ttl=timedelta(minutes=1))
    with pytest.raises(PlanStateError):
        repo.transition(plan_id, PlanState.PROPOSED, PlanState.APPROVED, actor="U0BBBB2")


def test_a_plan_belongs_to_the_server_of_its_check(repo: Repository, clock: FakeClock) -> None:
    check_id = add_check(repo, clock, "vpn01")
    with pytest.raises(ValueError, match="check of vpn01, not of vpn02"):
        repo.create_plan(check_id=check_id, server="vpn02", steps=[], fingerprint="F", requester="U1",
                         source="cli", ttl=timedelta(minutes=1))


def test_a_newer_check_supersedes_proposals_but_an_unreachable_one_does_not(
    repo: Repository, clock: FakeClock
) -> None:
    plan_id = add_plan(repo, clock)
    clock.advance(minutes=1)
    add_check(repo, clock, status="error", findings=[])
    assert repo.get_plan(plan_id).state == "PROPOSED"
    clock.advance(minutes=1)
    newer = add_check(repo, clock, status="healthy", findings=[])
    assert repo.get_plan(plan_id).state == "SUPERSEDED"
    assert repo.plan_audit(plan_id)[-1].details["superseded_by_check"] == newer
