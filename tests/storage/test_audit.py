"""The audit log is append-only: the database and the ORM both refuse changes."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from storage import Repository
from storage.engine import AuditImmutable, build_engine
from storage.models import AuditRow

from .conftest import FakeClock, add_plan


def _file(db_url: str) -> str:
    return db_url.removeprefix("sqlite:///")


def test_raw_sql_update_and_delete_are_refused(repo: Repository, clock: FakeClock, db_url: str) -> None:
    plan_id = add_plan(repo, clock)
    repo.audit(actor="U0CCCC3", action="approve", outcome="refused", server="vpn01", plan_id=plan_id,
               details={"reason": "not an approver"})
    conn = sqlite3.connect(_file(db_url))
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit SET outcome = 'ok' WHERE outcome = 'refused'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM audit WHERE outcome = 'refused'").fetchone() == (1,)
        conn.execute(  # appending is fine
            "INSERT INTO audit (at, actor, action, outcome, details) VALUES "
            "('2026-11-25 12:00:00.000000', 'U1', 'note', 'ok', '{}')"
        )
        conn.commit()
    finally:
        conn.close()
    assert [e.outcome for e in repo.plan_audit(plan_id)] == ["ok", "refused"]


def test_orm_changes_and_bulk_statements_are_refused(repo: Repository, clock: FakeClock, db_url: str) -> None:
    add_plan(repo, clock)
    engine = build_engine(db_url)
    try:
        with Session(engine) as session:
            event = session.scalars(select(AuditRow)).one()
            event.outcome = "tampered"
            with pytest.raises(AuditImmutable):
                session.flush()
            session.rollback()
            session.delete(session.scalars(select(AuditRow)).one())
            with pytest.raises(AuditImmutable):
                session.flush()
            session.rollback()
            with pytest.raises(AuditImmutable):
                session.execute(update(AuditRow).values(outcome="x"))
            with pytest.raises(AuditImmutable):
                session.execute(delete(AuditRow))
    finally:
        engine.dispose()
    assert [e.outcome for e in repo.plan_audit(1)] == ["ok"]


def test_audit_records_time_from_the_clock_and_redacts(repo: Repository, clock: FakeClock) -> None:
    plan_id = add_plan(repo, clock)
    clock.advance(hours=1)
    repo.audit(actor="U0CCCC3", action="approve", outcome="refused", server="vpn01", plan_id=plan_id,
               details={"reason": "two-person rule (token xoxb-1-2-abc)", "slack_token": "xoxb-1-2-3"})
    event = repo.plan_audit(plan_id)[-1]
    assert (event.at, event.actor, event.outcome) == (clock(), "U0CCCC3", "refused")
    assert event.details == {"reason": "two-person rule (token [REDACTED])", "slack_token": "[REDACTED]"}


@pytest.mark.parametrize("attempt", ["approve", "reject", "execute"])
def test_every_attempt_on_a_plan_that_does_not_exist_is_audited(repo: Repository, clock: FakeClock, attempt: str) -> None:
    """DESIGN 6: every attempt, allowed or refused, is an audit event: running a plan id that does not
    exist too, as approving or rejecting one does."""
    from bot.config import Config
    from bot.service import Actor, Service
    from storage.repository import NotFound

    service = Service(Config(), repo, environ={}, clock=clock)
    actor = Actor("U0AAAA1", "slack")
    with pytest.raises(NotFound):
        if attempt == "execute":
            service.execute(9999, actor)
        else:
            getattr(service, attempt)(9999, actor, authorised=True)
    [event] = repo.plan_audit(9999)
    assert (event.actor, event.action, event.outcome) == ("U0AAAA1", attempt, "refused: plan not found")
