"""The use cases shared by Slack and the CLI: check, approve, reject, execute, history, status.

Slack and the CLI call only this module. It ties together the inventory (never connect to a server
that is not in it), the remote side (`commands.psrp`), the pure engine (`commands.engine`) and the
record (`storage`). Authorisation facts that only Slack can know (is this user in an approver user
group?) come in as the `authorised` argument; the rules that hold everywhere (two-person rule, plan
expiry, exactly-once transitions) are applied here and in the repository.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.config import Config
from commands.clientview import ClientViewSession
from commands.engine import evaluate, evaluate_snapshot
from commands.errors import (
    ConfigError,
    NotAuthorised,
    PlanStateError,
    RemoteError,
    SnapshotError,
    SstpBotError,
)
from commands.executor import PlanExecutor, Timing
from commands.executor import StepResult as StepResult  # re-exported: Slack and the CLI read step results
from commands.fleet import ServerBusy, exclusive, run_fleet
from commands.jea import endpoint_outdated, outdated_message
from commands.model import CheckResult
from commands.psrp import RemoteSession
from commands.remediation import fingerprint
from commands.server import ServerConfig
from commands.snapshot import parse_snapshot
from storage.records import AuditRecord, CheckRecord, HistoryEntry, PlanRecord
from storage.repository import NotFound, Repository
from storage.runner import runner_is_dead
from storage.states import PlanState

log = logging.getLogger(__name__)

#: An approved plan waits this long for another process's fix of the same server to finish before
#: giving up (the plan then stays APPROVED and the refusal is audited). A fix is a probe, at most six
#: steps and a re-probe, each bounded by the server's operation timeout (120 s by default).
START_WAIT_SECONDS = 15 * 60.0


@dataclass(frozen=True)
class Actor:
    """Who asked: a Slack user ID (`source="slack"`) or `cli:<login>` (`source="cli"`)."""

    id: str
    source: str


@dataclass
class CheckOutcome:
    result: CheckResult
    check_id: int
    plan_id: int | None = None
    #: Older proposals of the server this check replaced (DESIGN 6), as they are now: SUPERSEDED.
    #: Slack takes the buttons off their cards.
    superseded: list[PlanRecord] = field(default_factory=list)


@dataclass
class FixOutcome:
    plan: PlanRecord
    state: str
    steps: list[StepResult] = field(default_factory=list)
    before: CheckResult | None = None
    after: CheckResult | None = None
    error: str | None = None
    state_changed: bool = False  # refused before any step: the server changed since the plan was made

    def to_json(self) -> dict[str, Any]:
        """The `fix --json` shape of DESIGN 7."""
        return {
            "server": self.plan.server,
            "plan_id": self.plan.id,
            "state": self.state,
            "steps": [s.to_json() for s in self.steps],
            "before": self.before.to_json() if self.before is not None else None,
            "after": self.after.to_json() if self.after is not None else None,
        }


class Session(Protocol):
    """What the service needs of a remote session (`commands.psrp.RemoteSession` in production)."""

    def __enter__(self) -> Session: ...
    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None: ...
    def probe(self) -> dict[str, Any]: ...
    def run(self, script: str, **params: Any) -> dict[str, Any]: ...


SessionFactory = Callable[[ServerConfig, "str | None"], Session]
#: Called before each step of a fix: (step number counted from 1, number of steps, the step).
ProgressCallback = Callable[[int, int, dict[str, Any]], None]
#: Called when a fix must first wait for another plan of the server (its id), run by another process.
WaitCallback = Callable[[int], None]


def resolve_targets(
    config: Config, names: Sequence[str] = (), *, all_servers: bool = False, group: str | None = None
) -> list[ServerConfig]:
    """Inventory entries for a request; UnknownServer/ConfigError before anything connects."""
    if all_servers:
        if not config.servers:
            raise ConfigError("the inventory has no servers")
        return list(config.servers.values())
    targets: list[ServerConfig] = []
    if group is not None:
        targets.extend(config.group(group))
    for name in names:
        server = config.server(name)
        if server not in targets:
            targets.append(server)
    return targets


class Service:
    """The bot's use cases. Thread-safe: Slack calls it from a worker pool."""

    def __init__(
        self,
        config: Config,
        repo: Repository,
        *,
        environ: Mapping[str, str],
        clock: Callable[[], datetime],
        session_factory: SessionFactory | None = None,
        max_workers: int = 8,
        start_wait: float = START_WAIT_SECONDS,
        start_poll: float = 1.0,
        step_timing: Timing | None = None,
    ) -> None:
        self.config = config
        self.repo = repo
        self.environ = environ
        self.clock = clock
        self.session_factory: SessionFactory = session_factory or RemoteSession
        self.max_workers = max_workers
        #: How long an approved plan waits for a plan of the same server that another process runs
        #: (the CLI beside the bot, a second bot on the same database), and how often it looks.
        self.start_wait = start_wait
        self.start_poll = start_poll
        #: How the executor waits for RemoteAccess (commands.executor); the deadline is per server.
        self.step_timing = step_timing or Timing()

    def close(self) -> None:
        """Release the database connections (the CLI closes each service it builds)."""
        self.repo.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- inventory -------------------------------------------------------------------------------

    def resolve_targets(
        self, names: Sequence[str] = (), *, all_servers: bool = False, group: str | None = None
    ) -> list[ServerConfig]:
        return resolve_targets(self.config, names, all_servers=all_servers, group=group)

    # -- check -----------------------------------------------------------------------------------

    def check(
        self,
        servers: Sequence[ServerConfig],
        actor: Actor,
        *,
        on_result: Callable[[CheckOutcome], None] | None = None,
        wait: bool = True,
        on_busy: Callable[[ServerConfig], None] | None = None,
        propose: bool = True,
    ) -> list[CheckOutcome]:
        """Probe each server once (bounded pool), diagnose, record, and propose a plan where one exists.

        With `wait=False` a server that another operation of this process holds (a fix, another
        check) is skipped, not waited for: `on_busy(server)` is called and it has no outcome. With
        `propose=False` the check is recorded (and supersedes older proposals, DESIGN 6) but proposes
        no plan: for a caller with nowhere to show one (the App Home tab).
        """
        self.repo.expire_due()

        def report(server: ServerConfig, outcome: CheckOutcome | None, error: BaseException | None) -> None:
            if outcome is not None and on_result is not None:
                on_result(outcome)
            elif isinstance(error, ServerBusy) and on_busy is not None:
                on_busy(server)

        results = run_fleet(
            list(servers),
            lambda server: self._check_one(server, actor, propose=propose),
            max_workers=self.max_workers,
            on_result=report,
            wait=wait,
        )
        outcomes: list[CheckOutcome] = []
        for item in results:
            if isinstance(item, ServerBusy):
                continue
            if isinstance(item, BaseException):
                # Remote and configuration problems are results; anything else is a bug: surface it.
                raise item
            outcomes.append(item)
        return outcomes

    def _check_one(self, server: ServerConfig, actor: Actor, *, propose: bool = True) -> CheckOutcome:
        started = self.clock()
        raw: dict[str, Any] | None = None
        try:
            password = server.password(self.environ)
            # run_fleet holds the server's lock around this call. Each probe carries the client view (DESIGN 11).
            with ClientViewSession(self.session_factory(server, password), server, self.clock) as session:
                raw = session.probe()
            result = evaluate(raw, server, self.clock())
        except RemoteError as exc:
            result = CheckResult(server=server.name, checked_at=self.clock(), error_kind=exc.kind, error_message=exc.message)
        except ConfigError as exc:
            result = CheckResult(server=server.name, checked_at=self.clock(), error_kind="config", error_message=str(exc))
        result.server = server.name
        return self._record(result, raw, actor, started, propose=propose)

    def _record(
        self,
        result: CheckResult,
        raw: dict[str, Any] | None,
        actor: Actor,
        started: datetime,
        *,
        propose: bool,
    ) -> CheckOutcome:
        # A successful check supersedes the server's open proposals; the caller tells their cards.
        check_id, superseded = self.repo.record_check_superseding(
            server=result.server,
            actor=actor.id,
            source=actor.source,
            started_at=started,
            finished_at=self.clock(),
            status=result.status,
            findings=[f.to_json() for f in result.findings],
            snapshot=raw if result.error_kind is None else None,
            error_kind=result.error_kind,
            error_message=result.error_message,
        )
        plan_id = None
        if propose and result.plan is not None:
            plan_id = self.repo.create_plan(
                check_id=check_id,
                server=result.server,
                steps=[s.to_json() for s in result.plan.steps],
                fingerprint=result.plan.fingerprint,
                requester=actor.id,
                source=actor.source,
                ttl=timedelta(minutes=self.config.slack.plan_ttl_minutes),
            )
        return CheckOutcome(result=result, check_id=check_id, plan_id=plan_id, superseded=superseded)

    # -- approvals -------------------------------------------------------------------------------

    def get_plan(self, plan_id: int) -> PlanRecord:
        return self.repo.get_plan(plan_id)

    def attach_message(self, plan_id: int, channel: str, ts: str) -> None:
        self.repo.set_plan_message(plan_id, channel, ts)

    def approve(self, plan_id: int, actor: Actor, *, authorised: bool) -> PlanRecord:
        """PROPOSED -> APPROVED, exactly once. Refusals raise and are audited."""
        return self._decide(plan_id, actor, authorised=authorised, new=PlanState.APPROVED, action="approve")

    def reject(self, plan_id: int, actor: Actor, *, authorised: bool) -> PlanRecord:
        return self._decide(plan_id, actor, authorised=authorised, new=PlanState.REJECTED, action="reject")

    def _decide(self, plan_id: int, actor: Actor, *, authorised: bool, new: PlanState, action: str) -> PlanRecord:
        # Expiry is part of the repository's conditional transition: an expired plan is refused there.
        try:
            plan = self.repo.get_plan(plan_id)
        except NotFound:
            # Every attempt is audited (DESIGN 6), including one on a plan that does not exist.
            self.repo.audit(actor=actor.id, action=action, outcome="refused: plan not found", plan_id=plan_id)
            raise
        if not authorised:
            self.repo.audit(
                actor=actor.id, action=action, outcome="refused: not an approver", server=plan.server, plan_id=plan_id
            )
            raise NotAuthorised("Only configured approvers can approve or reject fixes.")
        # The two-person rule protects Slack approvals. A CLI operator already has a shell on the
        # bot's host; `sstp-bot fix` records them as both requester and approver.
        if (
            new is PlanState.APPROVED
            and self.config.slack.two_person_rule
            and actor.source != "cli"
            and plan.requester == actor.id
        ):
            self.repo.audit(
                actor=actor.id,
                action=action,
                outcome="refused: two-person rule",
                server=plan.server,
                plan_id=plan_id,
            )
            raise NotAuthorised("Two-person rule: you requested this check, so another approver must approve it.")
        return self.repo.transition(plan_id, PlanState.PROPOSED, new, actor=actor.id)

    # -- fix -------------------------------------------------------------------------------------

    def execute(
        self,
        plan_id: int,
        actor: Actor,
        *,
        progress: ProgressCallback | None = None,
        waiting: WaitCallback | None = None,
        step_done: Callable[[StepResult], None] | None = None,
    ) -> FixOutcome:
        """Run an APPROVED plan: re-probe, refuse on drift, run the steps, re-probe. One session throughout.

        `waiting(other)` is called once if the plan must first wait for plan `other`, which another
        process is running on the same server. `step_done(result)` is called as each step's result is
        recorded (rollback steps included), before the next step starts."""
        # Wait for any other operation on this server *before* the plan becomes RUNNING: a second plan
        # approved while a fix runs then queues behind it (and finds the server changed) instead of
        # failing on the database's one-RUNNING-plan-per-server rule and staying APPROVED.
        try:
            server = self.repo.get_plan(plan_id).server
        except NotFound:
            # Every attempt is audited (DESIGN 6), as for approve and reject of a plan that does not exist.
            self.repo.audit(actor=actor.id, action="execute", outcome="refused: plan not found", plan_id=plan_id)
            raise
        with exclusive(server):
            return self._execute(plan_id, server, actor, progress, waiting, step_done)

    def _start(self, plan_id: int, server: str, actor: Actor, waiting: WaitCallback | None) -> PlanRecord:
        """APPROVED -> RUNNING, once no other process runs a plan of the same server.

        The in-process lock (`exclusive`) already serialises this process's operations; the database
        allows one RUNNING plan per server across processes. A plan another process runs is waited for
        (up to `start_wait`), so this one starts afterwards and finds the server changed, instead of
        being refused at once and left APPROVED. A runner found dead meanwhile (a crash) has its plan
        marked INTERRUPTED, as at start-up. Polling reads the plan table only: the single start attempt
        is audited, not every look.
        """
        deadline = time.monotonic() + self.start_wait
        told: set[int] = set()
        while True:
            other = self.repo.running_plan(server)
            if other is not None and other.id != plan_id:
                if other.runner and runner_is_dead(other.runner):
                    self.repo.recover_interrupted()
                    continue
                if time.monotonic() < deadline:
                    if waiting is not None and other.id not in told:
                        told.add(other.id)
                        waiting(other.id)
                    time.sleep(self.start_poll)
                    continue
            try:
                return self.repo.transition(plan_id, PlanState.APPROVED, PlanState.RUNNING, actor=actor.id)
            except PlanStateError as exc:
                # Still APPROVED after a refused start: another process started a plan of this server
                # between our look and our UPDATE. Wait for that one too, while time is left.
                if exc.state != PlanState.APPROVED.value or time.monotonic() >= deadline:
                    raise

    def _execute(
        self,
        plan_id: int,
        server_name: str,
        actor: Actor,
        progress: ProgressCallback | None,
        waiting: WaitCallback | None,
        step_done: Callable[[StepResult], None] | None = None,
    ) -> FixOutcome:
        plan = self._start(plan_id, server_name, actor, waiting)
        outcome = FixOutcome(plan=plan, state=PlanState.RUNNING)
        try:
            server = self.config.server(plan.server)
            password = server.password(self.environ)
            with ClientViewSession(self.session_factory(server, password), server, self.clock) as session:
                started = self.clock()
                raw_before = session.probe()
                snapshot_before = parse_snapshot(raw_before)
                outcome.before = evaluate_snapshot(snapshot_before, server, self.clock())
                if endpoint_outdated(raw_before.get("endpoint")):
                    # DESIGN 4/12: a JEA module other than the bot's may not match what the plan
                    # expects of its functions; checks go on, fixes wait for the reinstall.
                    outcome.error = outdated_message(server.name, raw_before["endpoint"])
                    return self._finish(outcome, PlanState.FAILED, actor, {"reason": "endpoint outdated"})
                if fingerprint(snapshot_before) != plan.fingerprint:
                    outcome.state_changed = True
                    outcome.error = (
                        "The server changed since the plan was made; nothing was touched. Run the check again."
                    )
                    return self._finish(outcome, PlanState.FAILED, actor, {"reason": "state changed"})
                # The steps, their waiting and the rollback: commands.executor (DESIGN 5 [2], 9 [2]).
                # Rollback steps are recorded like planned ones, so the card and history show them.
                def record(index: int, result: StepResult) -> None:
                    outcome.steps.append(result)
                    recorded = {"index": index, **result.to_json(), "exit_code": result.exit_code}
                    if result.rollback:
                        recorded["rollback"] = True
                    self.repo.record_step_result(plan_id, recorded)
                    if step_done is not None:
                        step_done(result)

                timing = replace(self.step_timing, restart_timeout=float(server.restart_timeout_seconds))
                outcome.error = PlanExecutor(session, timing=timing, record=record).run(plan.steps, progress)
                raw_after = session.probe()
            outcome.after = evaluate(raw_after, server, self.clock())
            self._record(outcome.after, raw_after, actor, started, propose=False)
        except (RemoteError, ConfigError, SnapshotError) as exc:
            # A failed step stays the reason; a re-check that fails after it is added, not swapped in.
            outcome.error = f"{outcome.error}; the re-check failed: {exc}" if outcome.error else str(exc)
            return self._finish(outcome, PlanState.FAILED, actor, {"error": outcome.error})
        except KeyboardInterrupt:
            # Ctrl-C in `sstp-bot fix`: the executor has rolled back what it could; the plan ends here.
            outcome.error = "interrupted by the operator (Ctrl-C); the server may be partly changed"
            self._finish(outcome, PlanState.FAILED, actor, {"error": outcome.error})
            raise
        except BaseException as exc:
            # Whatever happened (a bug, the database, an interrupted progress callback), the plan
            # must not stay RUNNING: that would block every later fix of this server.
            outcome.error = f"internal error: {type(exc).__name__}"
            self._finish(outcome, PlanState.FAILED, actor, {"error": outcome.error})
            raise
        fixed = outcome.error is None and outcome.after is not None and outcome.after.plan is None
        details: dict[str, Any] = {"after_status": outcome.after.status if outcome.after else None}
        if outcome.error:
            details["error"] = outcome.error
        return self._finish(outcome, PlanState.SUCCEEDED if fixed else PlanState.FAILED, actor, details)

    def _finish(self, outcome: FixOutcome, state: PlanState, actor: Actor, details: dict[str, Any]) -> FixOutcome:
        try:
            outcome.plan = self.repo.transition(
                outcome.plan.id, PlanState.RUNNING, state, actor=actor.id, details=details
            )
        except SstpBotError:
            log.exception("could not record the end of plan %s", outcome.plan.id)
        outcome.state = state
        return outcome

    # -- record ----------------------------------------------------------------------------------

    def history(self, server: str | None = None, limit: int = 20) -> list[HistoryEntry]:
        return self.repo.history(server, limit)

    def plan_audit(self, plan_id: int) -> list[AuditRecord]:
        return self.repo.plan_audit(plan_id)

    def status(self) -> list[CheckRecord]:
        return self.repo.latest_checks()

    def audit(
        self,
        *,
        actor: str,
        action: str,
        outcome: str,
        server: str | None = None,
        plan_id: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.repo.audit(actor=actor, action=action, outcome=outcome, server=server, plan_id=plan_id, details=details)


def build_service(config: Config, environ: Mapping[str, str], clock: Callable[[], datetime]) -> Service:
    """The production wiring: open (and upgrade) the database, mark crashed fixes INTERRUPTED."""
    repo = Repository(config.database.url, clock=clock, auto_upgrade=config.database.auto_upgrade)
    interrupted = repo.recover_interrupted()
    if interrupted:
        log.warning("plans interrupted by a previous crash (not re-run): %s", interrupted)
    return Service(config, repo, environ=environ, clock=clock)
