"""`/sstp`: parse and answer in the ack (usage errors), then run on the bot's queues.

Checks go through `CheckQueue` (issue 14, item 5): one check per server at a time, whoever asked for
it (a single check, `check all`, a group, several names): a request for a server whose check is under
way joins it and gets its result on its own card, without taking a worker. A server that another
operation holds (a fix, a CLI or scheduled check) is not waited for: its card says it is busy, so no
worker ever parks behind a server's lock. At most `per_user` checks wait or run per user (a clear
ephemeral answer in the ack beyond that).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slack_bolt import BoltContext
from slack_bolt.context.respond import Respond
from slack_sdk.errors import SlackApiError, SlackRequestError

from bot.service import CheckOutcome
from bot.slack import blocks, grammar, messages
from bot.slack.blocks import FleetLine, SlackMessage
from bot.slack.cards import CANNOT_POST, api_error
from bot.slack.ports import slack_actor
from commands.errors import ConfigError, SstpBotError, UsageError

if TYPE_CHECKING:
    from bot.slack.app import SstpSlackBot

logger = logging.getLogger(__name__)

MAX_CHECKS_PER_USER = 5
MAX_CHECKS_QUEUED = 64  # all users together: the check queue is bounded, beyond it the answer is "busy"


@dataclass(frozen=True)
class NoResult:
    """Why a check has no outcome to share: it could not run, or the server was busy."""

    text: str
    busy: bool = False


#: What a check that was joined hands its joiners: its outcome, or why there is none.
Joined = Callable[["CheckOutcome | NoResult"], None]


@dataclass
class _InFlight:
    """Whoever waits for the result of the check of one server that is under way."""

    joined: list[Joined] = field(default_factory=list)


class CheckQueue:
    """In-process bookkeeping of checks: per-server de-duplication and a per-user limit."""

    def __init__(self, per_user: int = MAX_CHECKS_PER_USER, total: int = MAX_CHECKS_QUEUED) -> None:
        self.per_user = per_user
        self.total = total
        self._servers: dict[str, _InFlight] = {}
        self._users: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take_user_slot(self, user: str) -> str | None:
        """Take a place for one check of `user`; the refusal text when there is none."""
        with self._lock:
            if self._users[user] >= self.per_user:
                return messages.too_many_checks(self.per_user)
            if sum(self._users.values()) >= self.total:
                return messages.BUSY
            self._users[user] += 1
            return None

    def release_user_slot(self, user: str) -> None:
        with self._lock:
            self._users[user] -= 1
            if self._users[user] <= 0:
                del self._users[user]

    def start_or_join(self, server: str, on_done: Joined) -> bool:
        """True: nobody checks `server`, the caller does now and must call `finish`.
        False: a check of it is under way; `on_done` gets its result when it ends."""
        key = server.lower()
        with self._lock:
            inflight = self._servers.get(key)
            if inflight is not None:
                inflight.joined.append(on_done)
                return False
            self._servers[key] = _InFlight()
            return True

    def joined(self, server: str) -> int:
        """How many requests wait for the check of `server` under way (0 when none runs)."""
        with self._lock:
            inflight = self._servers.get(server.lower())
            return len(inflight.joined) if inflight is not None else 0

    def finish(self, server: str, result: CheckOutcome | NoResult) -> None:
        """The check of `server` is over: hand `result` to everyone who joined it."""
        with self._lock:
            inflight = self._servers.pop(server.lower(), None)
        for on_done in inflight.joined if inflight is not None else []:
            try:
                on_done(result)
            except Exception:  # one joiner's card failing must not lose the others'
                logger.exception("could not report a joined check of %s", server)


class SlashCommands:
    """The `/sstp` listener and the work behind it."""

    def __init__(self, bot: SstpSlackBot, *, per_user: int = MAX_CHECKS_PER_USER) -> None:
        self.bot = bot
        self.queue = CheckQueue(per_user)

    # --- listener (bolt) -----------------------------------------------------------------------
    def on_command(self, ack: Callable[..., None], body: dict[str, Any], context: BoltContext, respond: Respond | None) -> None:
        try:
            command = grammar.parse(body.get("text"))
        except UsageError as exc:
            ack(text=str(exc))  # pure parsing: answered in the ack, nothing runs
            return
        user = str(context.user_id or "")
        channel = str(context.channel_id or "")
        replier = Replier(self.bot, respond, channel, user)
        if isinstance(command, grammar.Check):
            refused = self.queue.take_user_slot(user)
            if refused is not None:
                ack(text=refused)
                return
            ack()
            self.bot.submit(self.bot.commands, self._run_check, command, user, channel, replier)
            return
        ack()
        self.bot.submit(self.bot.queries, self.run_command, command, user, channel, replier)

    def _run_check(self, command: grammar.Check, user: str, channel: str, respond: Replier) -> None:
        try:
            self.run_command(command, user, channel, respond)
        finally:
            self.queue.release_user_slot(user)

    # --- the work ------------------------------------------------------------------------------
    def run_command(self, command: grammar.Command, user: str, channel: str, respond: Replier) -> None:
        bot = self.bot
        verb = type(command).__name__.lower()
        attempted = attempted_target(command)
        operator = bot.auth.is_operator(user)
        if isinstance(command, grammar.Help):
            respond(
                blocks.help_message(
                    operator=operator,
                    approver=bot.auth.is_approver(user),
                    two_person_rule=bot.config.slack.two_person_rule,
                    channel_allowed=True,
                )
            )
            return
        if not operator:
            bot.service.audit(
                actor=user, action=verb, outcome="refused: not an operator", server=attempted.get("server"),
                details={"channel": channel, "source": "slack", **attempted},
            )
            respond(blocks.notice(messages.REFUSED_NOT_OPERATOR))
            return
        try:
            if isinstance(command, grammar.Servers):
                respond(blocks.servers(list(bot.service.config.servers.values())))
            elif isinstance(command, grammar.Status):
                latest = bot.service.status()
                seen = {r.server.lower() for r in latest}
                never = [name for name in bot.service.config.servers if name.lower() not in seen]
                respond(blocks.status(latest, never))
            elif isinstance(command, grammar.History):
                server = bot.service.resolve_targets([command.server])[0]
                respond(blocks.history(server.name, bot.service.history(server.name, command.limit)))
            elif isinstance(command, grammar.Check):
                self._check(command, user, channel, respond)
        except ConfigError as exc:  # unknown server or group: nothing was run
            bot.service.audit(
                actor=user, action=verb, outcome="refused: not in the inventory",
                details={"channel": channel, "source": "slack", "reason": str(exc)[:300], **attempted},
            )
            respond(blocks.notice(messages.refused_unknown_server(str(exc))))
        except SstpBotError as exc:
            respond(blocks.notice(messages.escape(str(exc))))
        except Exception:  # the database, a bug: the caller is told, the details go to the log
            logger.exception("/sstp %s failed", verb)
            respond(blocks.notice(messages.INTERNAL_ERROR))

    def _check(self, command: grammar.Check, user: str, channel: str, respond: Replier) -> None:
        targets = self.bot.service.resolve_targets(command.servers, all_servers=command.all_servers, group=command.group)
        actor = slack_actor(user)
        if not command.fleet and len(targets) == 1:
            self._check_one(targets[0], actor, channel, respond)
        else:
            what = "all" if command.all_servers else f"group:{command.group}" if command.group else ", ".join(t.name for t in targets)
            self._check_fleet(targets, what, actor, channel, respond)

    def _first_post(self, channel: str, message: SlackMessage, respond: Replier) -> str | None:
        try:
            return self.bot.cards.post(channel, message)
        except SlackApiError as exc:
            if exc.response.get("error") in CANNOT_POST:
                respond(blocks.notice(messages.NOT_IN_CHANNEL))
            else:
                logger.warning("chat.postMessage failed: %s", api_error(exc))
                respond(blocks.notice(messages.INTERNAL_ERROR))
            return None
        except (SlackRequestError, OSError) as exc:
            logger.warning("chat.postMessage failed: %s", api_error(exc))
            respond(blocks.notice(messages.INTERNAL_ERROR))
            return None

    def _check_one(self, server: Any, actor: Any, channel: str, respond: Replier) -> None:
        cards = self.bot.cards
        ts = self._first_post(channel, blocks.checking(server.name), respond)
        if ts is None:
            return  # cannot report anywhere, so do not probe

        def joined(result: CheckOutcome | NoResult) -> None:
            if isinstance(result, NoResult):
                cards.final(channel, ts, blocks.notice(result.text))
            else:  # the plan has one card, the owner's: joined cards show the findings, not the buttons
                cards.final(channel, ts, self._report(result, buttons=False))

        if not self.queue.start_or_join(server.name, joined):
            return  # joined: the check under way updates this card too; this worker is free again
        shared: CheckOutcome | NoResult = NoResult(messages.check_failed(server.name, messages.INTERNAL_ERROR))

        def busy(_server: Any) -> None:
            nonlocal shared
            shared = NoResult(messages.server_busy(server.name), busy=True)
            cards.final(channel, ts, blocks.notice(shared.text))

        try:
            try:
                outcomes = self.bot.service.check([server], actor, wait=False, on_busy=busy)
            except SstpBotError as exc:
                shared = NoResult(messages.check_failed(server.name, str(exc)))
                cards.update(channel, ts, blocks.notice(shared.text))
                return
            except Exception:
                cards.update(channel, ts, blocks.notice(messages.check_failed(server.name, messages.INTERNAL_ERROR)))
                raise
            for outcome in outcomes:
                report = self._report(outcome)
                if outcome.plan_id is not None:
                    # The plan knows its card before the card shows its buttons: a click the moment
                    # they appear must find it (it is refused on any other message).
                    self.bot.service.attach_message(outcome.plan_id, channel, ts)
                where = cards.final(channel, ts, report)
                if outcome.plan_id is not None and where is not None and where != ts:
                    self.bot.service.attach_message(outcome.plan_id, channel, where)  # posted anew
                cards.retire(outcome)
                shared = outcome
        finally:
            self.queue.finish(server.name, shared)

    def _report(self, outcome: Any, *, buttons: bool = True) -> SlackMessage:
        expires_at = None
        if outcome.plan_id is not None and buttons:
            try:
                expires_at = self.bot.service.get_plan(outcome.plan_id).expires_at
            except SstpBotError:
                expires_at = None
        plan_id = outcome.plan_id if outcome.result.plan is not None and buttons else None
        return blocks.report(outcome.result, plan_id, expires_at)

    def _check_fleet(self, targets: list[Any], what: str, actor: Any, channel: str, respond: Replier) -> None:
        cards = self.bot.cards
        lines = [FleetLine(server=t.name) for t in targets]
        summary_ts = self._first_post(channel, blocks.fleet_summary(what, lines), respond)
        if summary_ts is None:
            return

        def send_summary() -> None:
            cards.update(channel, summary_ts, blocks.fleet_summary(what, lines))

        progress = ThrottledSummary(send_summary, self.bot.fleet_update_interval, self.bot.monotonic)
        index = {t.name: n for n, t in enumerate(targets)}
        remaining = [len(targets)]  # lines still without a result; the last one flushes the summary

        def settle(server: str, line: FleetLine) -> None:
            with progress.lock:
                n = index.get(server)
                if n is not None:
                    lines[n] = line
                remaining[0] -= 1
                last = remaining[0] == 0
            progress.changed()
            if last:
                progress.flush()

        def post_detail(outcome: CheckOutcome, *, buttons: bool) -> None:
            result = outcome.result
            try:
                detail_ts = cards.post_quietly(channel, self._report(outcome, buttons=buttons), summary_ts)
                if buttons:
                    if detail_ts is not None and outcome.plan_id is not None:
                        self.bot.service.attach_message(outcome.plan_id, channel, detail_ts)
                    cards.retire(outcome)
            except Exception:
                logger.exception("could not report the result of one server")
            settle(result.server, FleetLine(result.server, result.status, len(result.findings), result.error_kind))

        def joiner(name: str) -> Joined:
            def on_done(result: CheckOutcome | NoResult) -> None:
                if isinstance(result, NoResult):  # the check we joined could not run or found the server busy
                    cards.post_quietly(channel, blocks.notice(result.text), summary_ts)
                    settle(name, FleetLine(name, "error", 0, "busy" if result.busy else "error"))
                else:
                    post_detail(result, buttons=False)

            return on_done

        # Servers already being checked (by a single check or another fleet) are joined, not re-probed.
        mine = [t for t in targets if self.queue.start_or_join(t.name, joiner(t.name))]
        unfinished = {t.name for t in mine}

        def on_result(outcome: CheckOutcome) -> None:
            post_detail(outcome, buttons=True)
            unfinished.discard(outcome.result.server)
            self.queue.finish(outcome.result.server, outcome)

        def on_busy(server: Any) -> None:
            text = messages.server_busy(server.name)
            cards.post_quietly(channel, blocks.notice(text), summary_ts)
            settle(server.name, FleetLine(server.name, "error", 0, "busy"))
            unfinished.discard(server.name)
            self.queue.finish(server.name, NoResult(text, busy=True))

        reason = messages.INTERNAL_ERROR
        try:
            if mine:
                self.bot.service.check(mine, actor, on_result=on_result, wait=False, on_busy=on_busy)
        except SstpBotError as exc:
            reason = str(exc)
            cards.post_quietly(channel, blocks.notice(messages.check_failed(what, reason)), summary_ts)
        except Exception:
            cards.post_quietly(channel, blocks.notice(messages.check_failed(what, reason)), summary_ts)
            raise
        finally:
            for name in list(unfinished):  # no result (the check failed): its line and its joiners say so
                settle(name, FleetLine(name, "error", 0, "error"))
                self.queue.finish(name, NoResult(messages.check_failed(name, reason)))


def attempted_target(command: grammar.Command) -> dict[str, Any]:
    """The target of a command, for audit events: {"servers": [...], "server": the one named}."""
    if isinstance(command, grammar.Check):
        target: dict[str, Any] = {"servers": list(command.servers)[:50]}
        if command.all_servers:
            target["target"] = "all"
        elif command.group:
            target["target"] = f"group:{command.group}"
        if len(command.servers) == 1:
            target["server"] = command.servers[0]
        return target
    if isinstance(command, grammar.History):
        return {"servers": [command.server], "server": command.server}
    return {}


class Replier:
    """Answers the caller only: through the command's response_url, else chat.postEphemeral."""

    def __init__(self, bot: SstpSlackBot, respond: Respond | None, channel: str, user: str) -> None:
        self._bot, self._respond, self._channel, self._user = bot, respond, channel, user

    def __call__(self, message: SlackMessage) -> None:
        if self._respond is None or not getattr(self._respond, "response_url", None):
            self._bot.cards.ephemeral(self._channel, self._user, message.text, message)
            return
        try:
            self._respond(response_type="ephemeral", replace_original=False, **message.payload())
        except Exception as exc:
            logger.warning("could not answer through response_url: %s", type(exc).__name__)


class ThrottledSummary:
    """At most one edit per `interval` seconds while results arrive; an edit held back is sent when the
    interval is over (timer), and `flush` always sends the final state."""

    def __init__(self, send: Callable[[], None], interval: float, monotonic: Callable[[], float]) -> None:
        self._send = send
        self._interval = interval
        self._monotonic = monotonic
        self._last: float | None = None
        self._timer: threading.Timer | None = None
        self._done = False
        self.lock = threading.RLock()

    def changed(self) -> None:
        with self.lock:
            if self._done:
                return
            now = self._monotonic()
            if self._last is None or now - self._last >= self._interval:
                self._send_now()
            elif self._timer is None:
                self._timer = threading.Timer(self._interval - (now - self._last), self._held_back)
                self._timer.daemon = True
                self._timer.start()

    def _held_back(self) -> None:
        with self.lock:
            self._timer = None
            if not self._done:
                self._send_now()

    def _send_now(self) -> None:
        self._last = self._monotonic()
        self._send()

    def flush(self) -> None:
        with self.lock:
            self._done = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._send_now()
