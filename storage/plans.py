"""Plans and their state machine (DESIGN 6): one conditional UPDATE per transition, so whatever the
number of clicks, threads or processes, each happens once; runs recorded step by step; the plans of
dead runners (and this process's own abandoned ones) released as INTERRUPTED; the Slack card state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Row, Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, aliased

from commands.errors import PlanStateError, SstpBotError
from commands.model import as_utc

from .audit import AuditLog
from .base import SYSTEM_ACTOR, NotFound, _iso, log
from .models import CheckRow, PlanRow
from .records import PlanRecord
from .redaction import redact
from .resilience import RUNNING_HERE, reason, retried
from .runner import current_runner, describe_runner, runner_is_dead
from .states import DECISION_STATES, LEGAL_TRANSITIONS, TERMINAL_STATES, TRANSITION_ACTIONS, PlanState

_PLANS = cast(Table, PlanRow.__table__)
#: A server's PROPOSED plans (what a newer check or plan supersedes).
PROPOSED_OF_SERVER = select(PlanRow.id).where(
    PlanRow.server == bindparam("server"), PlanRow.state == PlanState.PROPOSED.value
)
_CHECK_SERVER = select(CheckRow.server).where(CheckRow.id == bindparam("check_id"))
_INSERT_PLAN = insert(_PLANS)
# PROPOSED -> SUPERSEDED, the one transition a check or a new plan makes (see `_conditional_update`).
_SUPERSEDE = (
    update(_PLANS)
    .where(_PLANS.c.id == bindparam("plan_id"), _PLANS.c.state == PlanState.PROPOSED.value)
    .values(state=PlanState.SUPERSEDED.value, finished_at=bindparam("now"))
)


class PlanStore(AuditLog):
    """Plans: creation, transitions, step results, recovery."""

    def _runner_is_dead(self, runner: str) -> bool | None:
        """Whether the process that ran a plan is gone (`storage.runner.runner_is_dead`)."""
        return runner_is_dead(runner)

    @retried
    def create_plan(
        self,
        *,
        check_id: int,
        server: str,
        steps: list[dict[str, Any]],
        fingerprint: str,
        requester: str,
        source: str,
        ttl: timedelta,
        channel: str | None = None,
        message_ts: str | None = None,
    ) -> int:
        """Store a PROPOSED plan; older PROPOSED plans of the same server become SUPERSEDED (audited)."""
        if ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        now = self._now()
        expires_at = now + ttl
        with self._write_connection() as connection:
            # Prebuilt Core statements: only the check's server is needed, not the whole row with its
            # findings; the plan and audit rows are the ones the ORM unit of work used to write.
            check_server = connection.execute(_CHECK_SERVER, {"check_id": check_id}).scalar_one_or_none()
            if check_server is None:
                raise NotFound(f"check {check_id} not found")
            if check_server != server:
                raise ValueError(f"check {check_id} is a check of {check_server}, not of {server}")
            older = connection.execute(PROPOSED_OF_SERVER, {"server": server}).scalars().all()
            inserted = connection.execute(
                _INSERT_PLAN,
                {
                    "check_id": check_id,
                    "server": server,
                    "state": PlanState.PROPOSED.value,
                    # Not redacted: the steps are executed exactly as stored, and every value in them
                    # comes from the server's own snapshot (validated by commands.scripts), never from a
                    # secret.
                    "steps": list(steps),
                    "fingerprint": fingerprint,
                    "requester": requester,
                    "approver": None,
                    "source": source,
                    "created_at": now,
                    "expires_at": expires_at,
                    "channel": channel,
                    "message_ts": message_ts,
                    "step_results": [],
                },
            ).inserted_primary_key
            assert inserted is not None  # a single-row INSERT into a table with a primary key
            plan_id: int = inserted[0]
            self._insert_audit(
                connection,
                at=now,
                actor=requester,
                action="propose",
                outcome="ok",
                server=server,
                plan_id=plan_id,
                details={"check_id": check_id, "steps": len(steps), "fingerprint": fingerprint,
                         "expires_at": _iso(expires_at), "source": source},
            )
            self._supersede(connection, older, server, now, {"superseded_by": plan_id})
            return plan_id

    def _supersede(
        self, connection: Connection, plan_ids: Sequence[int], server: str, now: datetime, reason: dict[str, Any]
    ) -> list[int]:
        """PROPOSED -> SUPERSEDED for `plan_ids` (audited); returns those that were still PROPOSED.

        On a Core connection (`_write_connection`): no ORM session holds a copy of the plans to refresh.
        """
        done: list[int] = []
        for old_id in plan_ids:
            # `_conditional_update(PROPOSED -> SUPERSEDED, finished_at=now)`, by its prebuilt statement.
            if connection.execute(_SUPERSEDE, {"plan_id": old_id, "now": now}).rowcount == 1:
                self._insert_audit(
                    connection,
                    at=now,
                    actor=SYSTEM_ACTOR,
                    action=TRANSITION_ACTIONS[PlanState.SUPERSEDED],
                    outcome="ok",
                    server=server,
                    plan_id=old_id,
                    details={"from": "PROPOSED", "to": "SUPERSEDED", **reason},
                )
                done.append(old_id)
        return done

    def get_plan(self, plan_id: int) -> PlanRecord:
        with self._read() as session:
            row = session.get(PlanRow, plan_id)
            if row is None:
                raise NotFound(f"plan {plan_id} not found")
            return self._plan_record(row)

    def running_plan(self, server: str) -> PlanRecord | None:
        """The plan RUNNING on `server`, in whichever process runs it (there is at most one).

        A plan this process abandoned (its end could not be written) is released first, and so is one
        whose runner is this very process but which nothing here runs: neither is "another process"
        to wait for (issue 14, item 1)."""
        self.release_abandoned()
        with self._read() as session:
            row = session.scalars(
                select(PlanRow).where(PlanRow.server == server, PlanRow.state == PlanState.RUNNING.value)
            ).first()
            mine = row is not None and self._abandoned_here(row)
        if mine:
            self.recover_interrupted()
        with self._read() as session:
            row = session.scalars(
                select(PlanRow).where(PlanRow.server == server, PlanRow.state == PlanState.RUNNING.value)
            ).first()
            return None if row is None else self._plan_record(row)

    @retried
    def set_plan_message(self, plan_id: int, channel: str, ts: str) -> None:
        """Remember the Slack message that shows the plan (so it can be updated later)."""
        with self._write() as session:
            row = session.get(PlanRow, plan_id)
            if row is None:
                raise NotFound(f"plan {plan_id} not found")
            row.channel, row.message_ts = channel, ts

    def transition(
        self,
        plan_id: int,
        expected: PlanState,
        new: PlanState,
        *,
        actor: str,
        details: dict[str, Any] | None = None,
    ) -> PlanRecord:
        """Move a plan from `expected` to `new` (see `_transition`), retried while the database is
        locked or full. The end of a run is the record's truth (issue 14, item 1):

        - a run whose step results could not all be written ends INTERRUPTED (not FAILED/SUCCEEDED),
          with the reason, once the results held back are written;
        - a run whose end cannot be written at all is *abandoned*: this process no longer runs it, and
          releases it (INTERRUPTED, with the reason) as soon as the database takes writes again
          (`release_abandoned`, also done by `running_plan` and `recover_interrupted`).
        """
        expected, new = PlanState(expected), PlanState(new)
        ending_a_run = expected is PlanState.RUNNING and new in TERMINAL_STATES
        if ending_a_run:
            self.release_abandoned()
            with self._pending_lock:
                held = list(self._unrecorded.get(plan_id, ()))
            if held:
                why = self._abandoned_reason(plan_id, held)
                new, details = PlanState.INTERRUPTED, {**(details or {}), "intended": new.value, "reason": why}
        try:
            record = self._transition(plan_id, expected, new, actor=actor, details=details, held=held if ending_a_run else [])
        except OperationalError as exc:
            if ending_a_run:
                why = (
                    self._abandoned_reason(plan_id, held)
                    if held
                    else f"the database could not record the end of the plan ({reason(exc)})"
                )
                with self._pending_lock:
                    self._abandoned[plan_id] = why
                RUNNING_HERE.discard(self._database_key, plan_id)
            raise
        if new is PlanState.RUNNING:
            RUNNING_HERE.add(self._database_key, plan_id)
        elif ending_a_run:
            RUNNING_HERE.discard(self._database_key, plan_id)
            with self._pending_lock:
                self._unrecorded.pop(plan_id, None)
                self._abandoned.pop(plan_id, None)
        return record

    def _abandoned_reason(self, plan_id: int, held: list[dict[str, Any]]) -> str:
        indexes = ", ".join(str(r.get("index", "?")) for r in held)
        return (
            f"the database could not record the result of step {indexes} in time; the fix was stopped "
            "there. The server may be half-fixed: run the check again"
        )

    def release_abandoned(self) -> list[int]:
        """Write what a database outage held back: step results, then INTERRUPTED for every plan this
        process abandoned (its end could not be written). One attempt each; False-safe to call often.
        Returns the ids of the plans released now."""
        with self._pending_lock:
            abandoned = dict(self._abandoned)
        released: list[int] = []
        for plan_id, why in abandoned.items():
            with self._pending_lock:
                held = list(self._unrecorded.get(plan_id, ()))
            try:
                self._transition(
                    plan_id, PlanState.RUNNING, PlanState.INTERRUPTED, actor=SYSTEM_ACTOR,
                    details={"reason": why, "runner": current_runner()}, held=held,
                )
            except OperationalError:
                continue  # still down: next time
            except SstpBotError:
                pass  # no longer RUNNING (someone ran `db interrupt`): nothing left to release
            else:
                released.append(plan_id)
            with self._pending_lock:
                self._abandoned.pop(plan_id, None)
                self._unrecorded.pop(plan_id, None)
        return released

    @retried
    def _transition(
        self,
        plan_id: int,
        expected: PlanState,
        new: PlanState,
        *,
        actor: str,
        details: dict[str, Any] | None = None,
        held: list[dict[str, Any]] | None = None,
    ) -> PlanRecord:
        """Move a plan from `expected` to `new`, exactly once, and audit the attempt either way.

        One conditional UPDATE (`WHERE id = :id AND state = :expected`, plus `expires_at > now` for
        an approval or rejection); a lost race, a wrong state or an expired plan raise PlanStateError
        with the actual state. A transition that is not in LEGAL_TRANSITIONS is a programming error and
        is refused before the database is touched. Starting a plan (-> RUNNING) while another plan of
        the same server runs is refused by the database's partial unique index; a started plan
        records this process as its runner (`storage.runner.current_runner()`), in the same UPDATE.
        """
        if new not in LEGAL_TRANSITIONS[expected]:
            raise PlanStateError(
                plan_id, expected.value, f"plan {plan_id}: {expected} -> {new} is not a legal transition"
            )
        now = self._now()
        extra = dict(details or {})
        action = TRANSITION_ACTIONS[new]
        values: dict[str, Any] = {"state": new.value}
        if new in DECISION_STATES:
            values.update(approver=actor, decided_at=now)
        if new in TERMINAL_STATES:
            values["finished_at"] = now
        if new is PlanState.RUNNING:
            values["runner"] = current_runner()
        running_conflict = False
        try:
            with self._write() as session:
                if self._conditional_update(
                    session, plan_id, expected, values, not_expired_at=now if new in DECISION_STATES else None
                ):
                    row = session.get(PlanRow, plan_id)
                    assert row is not None
                    for result in held or ():
                        self._append_step(session, row, redact(dict(result)), now)
                    self._insert_audit(
                        session.connection(),
                        at=now,
                        actor=actor,
                        action=action,
                        outcome="ok",
                        server=row.server,
                        plan_id=plan_id,
                        details={**extra, "from": expected.value, "to": new.value},
                    )
                    return self._plan_record(row)
        except IntegrityError:
            running_conflict = True  # uq_plans_one_running_per_server: another plan runs on that server

        # Refused: find out why, audit it, then raise.
        with self._write() as session:
            row = session.get(PlanRow, plan_id)
            if row is None:
                reason = f"plan {plan_id} not found"
                self._insert_audit(
                    session.connection(), at=now, actor=actor, action=action, outcome="refused", server=None,
                    plan_id=plan_id, details={**extra, "from": expected.value, "to": new.value, "reason": reason},
                )
                error: SstpBotError = NotFound(reason)
            else:
                state = PlanState(row.state)
                if running_conflict:
                    other = session.scalar(
                        select(PlanRow.id).where(
                            PlanRow.server == row.server, PlanRow.state == PlanState.RUNNING.value
                        )
                    )
                    reason = (
                        f"plan {plan_id} cannot start: plan {other} is already running on {row.server}"
                        if other is not None
                        else f"plan {plan_id} cannot start: another plan is already running on {row.server}"
                    )
                elif state is expected and new in DECISION_STATES and as_utc(row.expires_at) <= now:
                    # Expired but not yet swept by expire_due(): expire it now, so the state says so.
                    if self._conditional_update(
                        session, plan_id, state, {"state": PlanState.EXPIRED.value, "finished_at": now}
                    ):
                        self._insert_audit(
                            session.connection(), at=now, actor=SYSTEM_ACTOR, action=TRANSITION_ACTIONS[PlanState.EXPIRED],
                            outcome="ok", server=row.server, plan_id=plan_id,
                            details={"from": state.value, "to": PlanState.EXPIRED.value,
                                     "expires_at": _iso(row.expires_at)},
                        )
                        session.refresh(row)
                        state = PlanState(row.state)
                    reason = f"plan {plan_id} expired at {_iso(row.expires_at)}"
                else:
                    reason = _refusal_reason(row, expected)
                self._insert_audit(
                    session.connection(), at=now, actor=actor, action=action, outcome="refused", server=row.server,
                    plan_id=plan_id,
                    details={**extra, "from": expected.value, "to": new.value, "state": state.value,
                             "reason": reason},
                )
                error = PlanStateError(plan_id, state.value, reason)
        raise error

    @retried
    def expire_due(self) -> list[int]:
        """PROPOSED plans whose time is up become EXPIRED (audited); returns their ids."""
        now = self._now()
        with self._write() as session:
            due = session.scalars(
                select(PlanRow)
                .where(PlanRow.state == PlanState.PROPOSED.value, PlanRow.expires_at <= now)
                .order_by(PlanRow.id)
            ).all()
            expired: list[int] = []
            for row in due:
                if self._conditional_update(
                    session, row.id, PlanState.PROPOSED, {"state": PlanState.EXPIRED.value, "finished_at": now}
                ):
                    expired.append(row.id)
                    self._insert_audit(
                        session.connection(), at=now, actor=SYSTEM_ACTOR, action=TRANSITION_ACTIONS[PlanState.EXPIRED],
                        outcome="ok", server=row.server, plan_id=row.id,
                        details={"from": "PROPOSED", "to": "EXPIRED", "expires_at": _iso(row.expires_at)},
                    )
            return expired

    def recover_interrupted(self, is_dead: Callable[[str], bool | None] | None = None) -> list[int]:
        """At start-up: plans left RUNNING by a crash become INTERRUPTED (audited), never re-run.

        Only plans whose runner is gone are touched: `is_dead(runner)` (default
        `storage.runner.runner_is_dead`) says True (that process no longer exists, or its pid now
        belongs to another process), or the plan has no recorded runner (started before revision
        0003). A plan run by a live process (the bot, or `sstp-bot fix` in another terminal), or by a
        process on another host (None: cannot tell), is left RUNNING and logged. Returns the ids of the
        plans marked INTERRUPTED.
        """
        check = self._runner_is_dead if is_dead is None else is_dead
        released = self.release_abandoned()
        now = self._now()
        with self._write() as session:
            running = session.scalars(
                select(PlanRow).where(PlanRow.state == PlanState.RUNNING.value).order_by(PlanRow.id)
            ).all()
            interrupted: list[int] = []
            for row in running:
                if row.runner is None:
                    why = "no runner recorded (started by a version before 0003_plan_runner)"
                elif self._abandoned_here(row):
                    if row.id in self._abandoned:
                        continue  # its held-back results must go first: `release_abandoned`, next time
                    why = f"this process ({describe_runner(row.runner)}) no longer runs it"
                else:
                    verdict = check(row.runner)
                    if verdict is not True:
                        log.info(
                            "plan %s on %s is left RUNNING: its runner (%s) %s", row.id, row.server,
                            describe_runner(row.runner),
                            "is alive" if verdict is False else "cannot be checked from this host",
                        )
                        continue
                    why = f"the process running it ({describe_runner(row.runner)}) no longer exists"
                if self._conditional_update(
                    session, row.id, PlanState.RUNNING,
                    {"state": PlanState.INTERRUPTED.value, "finished_at": now},
                ):
                    interrupted.append(row.id)
                    self._insert_audit(
                        session.connection(), at=now, actor=SYSTEM_ACTOR, action=TRANSITION_ACTIONS[PlanState.INTERRUPTED],
                        outcome="ok", server=row.server, plan_id=row.id,
                        details={"from": "RUNNING", "to": "INTERRUPTED", "runner": row.runner, "why": why,
                                 "reason": "the bot stopped while the plan was running; it is not re-run "
                                           "automatically",
                                 "steps_recorded": len(row.step_results)},
                    )
            return [*released, *interrupted]

    def _abandoned_here(self, row: PlanRow) -> bool:
        """RUNNING with this process as its runner, yet run by nothing in this process."""
        return row.runner == current_runner() and (self._database_key, row.id) not in RUNNING_HERE

    def record_step_result(self, plan_id: int, result: dict[str, Any]) -> None:
        """Append one step's result (`{"action", "ok", "changed", "detail", ...}`) to the plan; audited.

        Retried while the database is locked or full; if it still cannot be written the result is held
        back (written with the plan's end, which is then INTERRUPTED with the reason) and the error
        raised, so the fix stops: no step runs that the record could not show.
        """
        try:
            self._record_step_result(plan_id, result)
        except OperationalError:
            with self._pending_lock:
                self._unrecorded.setdefault(plan_id, []).append(dict(result))
            raise

    @retried
    def _record_step_result(self, plan_id: int, result: dict[str, Any]) -> None:
        now = self._now()
        clean = redact(dict(result))
        with self._write() as session:
            row = session.get(PlanRow, plan_id)
            if row is None:
                raise NotFound(f"plan {plan_id} not found")
            self._append_step(session, row, clean, now)

    def _append_step(self, session: Session, row: PlanRow, clean: dict[str, Any], now: datetime) -> None:
        row.step_results = [*row.step_results, clean]
        self._insert_audit(
            session.connection(), at=now, actor=SYSTEM_ACTOR, action="step",
            outcome="ok" if clean.get("ok", True) else "failed", server=row.server, plan_id=row.id,
            details={"index": len(row.step_results) - 1, **clean},
        )

    def interrupted_cards(self, limit: int = 50) -> list[PlanRecord]:
        """INTERRUPTED plans whose Slack card does not say so yet (a crash, an outage at the end of a fix)."""
        with self._read() as session:
            rows = session.scalars(
                select(PlanRow)
                .where(
                    PlanRow.state == PlanState.INTERRUPTED.value,
                    PlanRow.message_ts.is_not(None),
                    (PlanRow.card_state.is_(None)) | (PlanRow.card_state != PlanState.INTERRUPTED.value),
                )
                .order_by(PlanRow.id)
                .limit(limit)
            ).all()
            return [self._plan_record(r) for r in rows]

    def expired_cards(self, limit: int = 50, plan_id: int | None = None) -> list[PlanRecord]:
        """EXPIRED plans whose Slack card does not say so yet (newest first), or plan `plan_id` if it is one.

        A card that now shows a newer plan is left alone: a scheduled sweep moves a server's alert card
        from its undecided plan to the newest one (`bot.slack.alerts`), so the older plan expiring says
        nothing about what the card shows."""
        newer = aliased(PlanRow)
        card_moved_on = (
            select(newer.id)
            .where(newer.channel == PlanRow.channel, newer.message_ts == PlanRow.message_ts, newer.id > PlanRow.id)
            .exists()
        )
        statement = select(PlanRow).where(
            PlanRow.state == PlanState.EXPIRED.value,
            PlanRow.message_ts.is_not(None),
            (PlanRow.card_state.is_(None)) | (PlanRow.card_state != PlanState.EXPIRED.value),
            ~card_moved_on,
        )
        if plan_id is not None:
            statement = statement.where(PlanRow.id == plan_id)
        with self._read() as session:
            rows = session.scalars(statement.order_by(PlanRow.id.desc()).limit(limit)).all()
            return [self._plan_record(r) for r in rows]

    @retried
    def mark_card(self, plan_id: int, state: str) -> None:
        """Remember that the plan's card now shows `state`."""
        with self._write() as session:
            session.execute(update(PlanRow).where(PlanRow.id == plan_id).values(card_state=str(state)))

    @staticmethod
    def _conditional_update(
        session: Session,
        plan_id: int,
        expected: PlanState,
        values: dict[str, Any],
        *,
        not_expired_at: datetime | None = None,
    ) -> bool:
        """`UPDATE plans SET ... WHERE id = :id AND state = :expected [AND expires_at > :now]`."""
        statement = update(PlanRow).where(PlanRow.id == plan_id, PlanRow.state == expected.value)
        if not_expired_at is not None:
            statement = statement.where(PlanRow.expires_at > not_expired_at)
        result = session.execute(statement.values(values).execution_options(synchronize_session=False))
        changed = cast(CursorResult[Any], result).rowcount == 1
        if changed:
            # The identity map may hold the row as it was before the UPDATE.
            cached = session.identity_map.get(session.identity_key(PlanRow, plan_id))
            if cached is not None:
                session.refresh(cached)
        return changed

    @staticmethod
    def _plan_record(r: PlanRow | Row[Any]) -> PlanRecord:
        """The record of an ORM plan row, or of a Core row of the plans table (same names)."""
        return PlanRecord(
            id=r.id,
            check_id=r.check_id,
            server=r.server,
            state=r.state,
            steps=list(r.steps or []),
            fingerprint=r.fingerprint,
            requester=r.requester,
            approver=r.approver,
            created_at=as_utc(r.created_at),
            expires_at=as_utc(r.expires_at),
            decided_at=as_utc(r.decided_at) if r.decided_at else None,
            finished_at=as_utc(r.finished_at) if r.finished_at else None,
            channel=r.channel,
            message_ts=r.message_ts,
            step_results=list(r.step_results or []),
            source=r.source,
            runner=r.runner,
        )


def _refusal_reason(row: PlanRow, expected: PlanState) -> str:
    """Why a plan is not in the state an action needs, in the admin's words."""
    state = PlanState(row.state)
    plan = f"plan {row.id}"
    match state:
        case PlanState.APPROVED:
            return f"{plan} was already approved by {row.approver}"
        case PlanState.REJECTED:
            return f"{plan} was rejected by {row.approver}"
        case PlanState.EXPIRED:
            return f"{plan} expired at {_iso(row.expires_at)}"
        case PlanState.SUPERSEDED:
            return f"{plan} was superseded by a newer check of {row.server}"
        case PlanState.RUNNING:
            return f"{plan} is already running"
        case PlanState.SUCCEEDED | PlanState.FAILED:
            return f"{plan} has already run ({state.value.lower()})"
        case PlanState.INTERRUPTED:
            return (
                f"{plan} was interrupted (the bot stopped while it ran) and is never re-run "
                f"automatically: check {row.server} again"
            )
        case PlanState.PROPOSED:
            return f"{plan} has not been approved yet"
    return f"{plan} is {state.value}, not {expected.value}"
