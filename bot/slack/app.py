"""The bolt app: `/sstp` and the Approve/Reject buttons wired to the use-case layer.

Every listener acknowledges at once (Slack waits 3 seconds at most) and hands the work to a bounded
thread pool: one for commands (checks can take minutes) and one for plan decisions, so approvals are
never stuck behind a fleet check. Slash-command answers meant for the caller only go through the
command's `response_url`; refusals of button clicks are `chat.postEphemeral` to the clicker and leave
the card untouched.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from slack_bolt import App
from slack_bolt.context.respond import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.config import Config
from bot.service import CheckOutcome, FixOutcome
from bot.slack import blocks, grammar, messages
from bot.slack.auth import Authoriser
from bot.slack.blocks import APPROVE_ACTION, REJECT_ACTION, FleetLine, SlackMessage
from bot.slack.ports import ServicePort, slack_actor
from commands.errors import ConfigError, NotAuthorised, PlanStateError, SstpBotError, UsageError

logger = logging.getLogger(__name__)

SLASH_COMMAND = "/sstp"
PLAN_ID_RE = re.compile(r"^[0-9]{1,18}$")
_CANNOT_POST = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}


def make_web_client(token: str | None, api_url: str = "", *, timeout: int = 30, rate_limit_retries: int = 3) -> WebClient:
    """A WebClient on `api_url` (default slack.com) that honours 429 + Retry-After."""
    base_url = (api_url.rstrip("/") + "/") if api_url else WebClient.BASE_URL
    return WebClient(
        token=token,
        base_url=base_url,
        timeout=timeout,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=1),
            RateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
        ],
    )


class SstpApp(App):
    """A bolt App that also carries the sstp-bot handlers (`.sstp`), for shutdown and tests."""

    sstp: SstpSlackBot
    verifies_requests: bool = False
    signing_secret: str = ""


def create_app(
    service: ServicePort,
    config: Config,
    *,
    client: WebClient | None = None,
    token: str | None = None,
    signing_secret: str | None = None,
    authoriser: Authoriser | None = None,
    max_workers: int = 8,
    fleet_update_interval: float = 1.0,
) -> SstpApp:
    """The bolt app for `service`. Pass `signing_secret` in HTTP mode (requests are then verified);
    without it (Socket Mode) bolt skips signature checks, which Socket Mode does not use."""
    if client is None:
        client = make_web_client(token, config.slack.api_url)
    app = SstpApp(
        client=client,
        signing_secret=signing_secret or "",
        request_verification_enabled=bool(signing_secret),
        # Our listeners only parse, ack and hand over to our own pools, so running them inline is
        # fast; it spares bolt's extra thread hop and its 10 ms polling for the ack.
        process_before_response=True,
        name="sstp-bot",
    )
    bot = SstpSlackBot(
        service,
        config,
        client,
        authoriser=authoriser,
        max_workers=max_workers,
        fleet_update_interval=fleet_update_interval,
    )
    bot.register(app)
    app.sstp = bot
    app.verifies_requests = signing_secret is not None and signing_secret != ""
    app.signing_secret = signing_secret or ""
    return app


class SstpSlackBot:
    """The listeners and the work behind them."""

    def __init__(
        self,
        service: ServicePort,
        config: Config,
        client: WebClient,
        *,
        authoriser: Authoriser | None = None,
        max_workers: int = 8,
        fleet_update_interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.config = config
        self.client = client
        self.auth = authoriser or Authoriser(config.slack, client)
        self.fleet_update_interval = fleet_update_interval
        self._monotonic = monotonic
        # Separate queues so nothing quick waits behind something slow: checks can take minutes, fixes
        # longer; answers (help, status, history, servers) and approve/reject decisions take a moment.
        self.commands = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sstp-command")
        self.queries = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sstp-query")
        self.decisions = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sstp-decision")
        self.fixes = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sstp-fix")
        self._pending: set[Future[None]] = set()
        self._pending_lock = threading.Lock()

    # --- wiring ------------------------------------------------------------------------------
    def register(self, app: App) -> None:
        app.command(SLASH_COMMAND)(self.on_command)
        app.action(APPROVE_ACTION)(self.on_approve)
        app.action(REJECT_ACTION)(self.on_reject)

    def _submit(self, pool: ThreadPoolExecutor, fn: Callable[..., None], *args: Any) -> None:
        future = pool.submit(self._guarded, fn, *args)
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    @staticmethod
    def _guarded(fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            logger.exception("unexpected error in %s", getattr(fn, "__name__", fn))

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every submitted task has finished (tests, clean shutdown). True if idle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._pending_lock:
                pending = list(self._pending)
            if not pending:
                return True
            for future in pending:
                with contextlib.suppress(Exception):
                    future.result(timeout=max(0.0, deadline - time.monotonic()))
        with self._pending_lock:
            return not self._pending

    def close(self, wait: bool = True) -> None:
        """Stop taking work: queued tasks are dropped, running ones finish when `wait` (a fix is never cut mid-step)."""
        for pool in (self.commands, self.queries, self.decisions, self.fixes):
            pool.shutdown(wait=wait, cancel_futures=True)

    # --- /sstp -------------------------------------------------------------------------------
    def on_command(self, ack: Callable[..., None], body: dict[str, Any], respond: Respond | None) -> None:
        try:
            command = grammar.parse(body.get("text"))
        except UsageError as exc:
            ack(text=str(exc))  # pure parsing: answered in the ack, nothing runs
            return
        ack()
        user = str(body.get("user_id", ""))
        channel = str(body.get("channel_id", ""))
        pool = self.commands if isinstance(command, grammar.Check) else self.queries
        self._submit(pool, self._run_command, command, user, channel, _Replier(self, respond, channel, user))

    def _reply(self, respond: _Replier, message: SlackMessage) -> None:
        respond(message)

    def _run_command(self, command: grammar.Command, user: str, channel: str, respond: _Replier) -> None:
        verb = type(command).__name__.lower()
        # What was attempted, for the audit trail of a refusal: the servers named (a check's targets
        # or a history's server); `all` and groups as typed.
        attempted = _attempted(command)
        if not self.auth.channel_allowed(channel):
            self.service.audit(
                actor=user, action=verb, outcome="refused: channel not allowed", server=attempted.get("server"),
                details={"channel": channel, "source": "slack", **attempted},
            )
            self._reply(respond, blocks.notice(messages.REFUSED_CHANNEL))
            return
        operator = self.auth.is_operator(user)
        if isinstance(command, grammar.Help):
            self._reply(
                respond,
                blocks.help_message(
                    operator=operator,
                    approver=self.auth.is_approver(user),
                    two_person_rule=self.config.slack.two_person_rule,
                    channel_allowed=True,
                ),
            )
            return
        if not operator:
            self.service.audit(
                actor=user, action=verb, outcome="refused: not an operator", server=attempted.get("server"),
                details={"channel": channel, "source": "slack", **attempted},
            )
            self._reply(respond, blocks.notice(messages.REFUSED_NOT_OPERATOR))
            return
        try:
            if isinstance(command, grammar.Servers):
                self._reply(respond, blocks.servers(list(self.service.config.servers.values())))
            elif isinstance(command, grammar.Status):
                latest = self.service.status()
                seen = {r.server.lower() for r in latest}
                never = [name for name in self.service.config.servers if name.lower() not in seen]
                self._reply(respond, blocks.status(latest, never))
            elif isinstance(command, grammar.History):
                server = self.service.resolve_targets([command.server])[0]
                self._reply(respond, blocks.history(server.name, self.service.history(server.name, command.limit)))
            elif isinstance(command, grammar.Check):
                self._check(command, user, channel, respond)
        except ConfigError as exc:  # unknown server or group: nothing was run
            self.service.audit(
                actor=user, action=verb, outcome="refused: not in the inventory",
                details={"channel": channel, "source": "slack", "reason": str(exc)[:300], **attempted},
            )
            self._reply(respond, blocks.notice(messages.refused_unknown_server(str(exc))))
        except SstpBotError as exc:
            self._reply(respond, blocks.notice(messages.escape(str(exc))))
        except Exception:  # the database, a bug: the caller is told, the details go to the log
            logger.exception("/sstp %s failed", verb)
            self._reply(respond, blocks.notice(messages.INTERNAL_ERROR))

    # --- checks ------------------------------------------------------------------------------
    def _post(self, channel: str, message: SlackMessage, thread_ts: str | None = None) -> str:
        kwargs: dict[str, Any] = {"channel": channel, **message.payload()}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        response = self.client.chat_postMessage(**kwargs)
        ts = str(response["ts"])
        for reply in message.thread:
            self._post_quietly(channel, reply, thread_ts or ts)
        return ts

    def _post_quietly(self, channel: str, message: SlackMessage, thread_ts: str | None = None) -> str | None:
        try:
            return self._post(channel, message, thread_ts)
        except (SlackApiError, SlackRequestError, OSError) as exc:
            logger.warning("chat.postMessage failed: %s", _api_error(exc))
            return None

    def _update(self, channel: str, ts: str, message: SlackMessage, *, with_thread: bool = False) -> bool:
        try:
            self.client.chat_update(channel=channel, ts=ts, **message.payload())
        except (SlackApiError, SlackRequestError, OSError) as exc:
            logger.warning("chat.update failed: %s", _api_error(exc))
            return False
        if with_thread:
            for reply in message.thread:
                self._post_quietly(channel, reply, ts)
        return True

    def _final(self, channel: str, ts: str, message: SlackMessage) -> str | None:
        """Put a final report on its card; if the card cannot be edited, post the report as a new
        message (in the card's thread) so the result is never lost. Returns where it now lives."""
        if self._update(channel, ts, message, with_thread=True):
            return ts
        return self._post_quietly(channel, message, ts)

    def _check(self, command: grammar.Check, user: str, channel: str, respond: _Replier) -> None:
        targets = self.service.resolve_targets(command.servers, all_servers=command.all_servers, group=command.group)
        actor = slack_actor(user)
        if not command.fleet and len(targets) == 1:
            self._check_one(targets[0], actor, channel, respond)
        else:
            what = "all" if command.all_servers else f"group:{command.group}" if command.group else ", ".join(t.name for t in targets)
            self._check_fleet(targets, what, actor, channel, respond)

    def _first_post(self, channel: str, message: SlackMessage, respond: _Replier) -> str | None:
        try:
            return self._post(channel, message)
        except SlackApiError as exc:
            if exc.response.get("error") in _CANNOT_POST:
                self._reply(respond, blocks.notice(messages.NOT_IN_CHANNEL))
            else:
                logger.warning("chat.postMessage failed: %s", _api_error(exc))
                self._reply(respond, blocks.notice(messages.INTERNAL_ERROR))
            return None
        except (SlackRequestError, OSError) as exc:
            logger.warning("chat.postMessage failed: %s", _api_error(exc))
            self._reply(respond, blocks.notice(messages.INTERNAL_ERROR))
            return None

    def _check_one(self, server: Any, actor: Any, channel: str, respond: _Replier) -> None:
        ts = self._first_post(channel, blocks.checking(server.name), respond)
        if ts is None:
            return  # cannot report anywhere, so do not probe
        try:
            outcomes = self.service.check([server], actor)
        except SstpBotError as exc:
            self._update(channel, ts, blocks.notice(messages.check_failed(server.name, str(exc))))
            return
        except Exception:
            self._update(channel, ts, blocks.notice(messages.check_failed(server.name, messages.INTERNAL_ERROR)))
            raise
        for outcome in outcomes:
            where = self._final(channel, ts, self._report(outcome))
            if outcome.plan_id is not None and where is not None:
                self.service.attach_message(outcome.plan_id, channel, where)
            self._retire_cards(outcome)

    def _retire_cards(self, outcome: CheckOutcome) -> None:
        """Take the buttons off the cards of the proposals this check replaced (DESIGN 6), so nobody
        clicks a plan that can no longer be approved. Best effort: a click on one is refused anyway."""
        for plan in outcome.superseded:
            if plan.channel and plan.message_ts:
                self._update(plan.channel, plan.message_ts, blocks.plan_card(plan, [messages.PLAN_STATE_LINES["SUPERSEDED"]]))

    def _report(self, outcome: Any) -> SlackMessage:
        expires_at = None
        if outcome.plan_id is not None:
            try:
                expires_at = self.service.get_plan(outcome.plan_id).expires_at
            except SstpBotError:
                expires_at = None
        return blocks.report(outcome.result, outcome.plan_id if outcome.result.plan is not None else None, expires_at)

    def _check_fleet(self, targets: list[Any], what: str, actor: Any, channel: str, respond: _Replier) -> None:
        lines = [FleetLine(server=t.name) for t in targets]
        summary_ts = self._first_post(channel, blocks.fleet_summary(what, lines), respond)
        if summary_ts is None:
            return
        def send_summary() -> None:
            self._update(channel, summary_ts, blocks.fleet_summary(what, lines))

        progress = _ThrottledSummary(
            send_summary,
            self.fleet_update_interval,
            self._monotonic,
        )
        index = {t.name: n for n, t in enumerate(targets)}

        def on_result(outcome: Any) -> None:
            try:
                result = outcome.result
                detail_ts = self._post_quietly(channel, self._report(outcome), summary_ts)
                if detail_ts is not None and outcome.plan_id is not None:
                    self.service.attach_message(outcome.plan_id, channel, detail_ts)
                self._retire_cards(outcome)
                with progress.lock:
                    n = index.get(result.server)
                    if n is not None:
                        lines[n] = FleetLine(result.server, result.status, len(result.findings), result.error_kind)
                progress.changed()
            except Exception:
                logger.exception("could not report the result of one server")

        try:
            self.service.check(targets, actor, on_result=on_result)
        except SstpBotError as exc:
            self._post_quietly(channel, blocks.notice(messages.check_failed(what, str(exc))), summary_ts)
        except Exception:
            self._post_quietly(channel, blocks.notice(messages.check_failed(what, messages.INTERNAL_ERROR)), summary_ts)
            raise
        finally:
            progress.flush()

    # --- Approve / Reject --------------------------------------------------------------------
    def on_approve(self, ack: Callable[..., None], body: dict[str, Any]) -> None:
        ack()
        self._submit(self.decisions, self._decide, body, True)

    def on_reject(self, ack: Callable[..., None], body: dict[str, Any]) -> None:
        ack()
        self._submit(self.decisions, self._decide, body, False)

    def _ephemeral(self, channel: str, user: str, text: str, message: SlackMessage | None = None) -> None:
        try:
            self.client.chat_postEphemeral(channel=channel, user=user, **(message or blocks.notice(text)).payload())
        except (SlackApiError, SlackRequestError, OSError) as exc:
            logger.warning("chat.postEphemeral failed: %s", _api_error(exc))

    def _decide(self, body: dict[str, Any], approve: bool) -> None:
        user = str((body.get("user") or {}).get("id", ""))
        channel = str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or "")
        message_ts = str((body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts") or "")
        actions = body.get("actions") or [{}]
        value = str(actions[0].get("value", ""))
        name = "approve" if approve else "reject"
        if not PLAN_ID_RE.match(value):
            self.service.audit(actor=user, action=name, outcome="refused: bad button value", details={"channel": channel, "value": value[:40]})
            self._ephemeral(channel, user, messages.REFUSED_BAD_BUTTON)
            return
        plan_id = int(value)
        if not self.auth.channel_allowed(channel):
            self.service.audit(
                actor=user, action=name, outcome="refused: channel not allowed", plan_id=plan_id,
                details={"channel": channel, "source": "slack"},
            )
            self._ephemeral(channel, user, messages.REFUSED_CHANNEL)
            return
        authorised = self.auth.is_approver(user)
        actor = slack_actor(user)
        try:
            decide = self.service.approve if approve else self.service.reject
            plan = decide(plan_id, actor, authorised=authorised)
        except NotAuthorised:
            self._ephemeral(channel, user, messages.REFUSED_OWN_REQUEST if authorised else messages.REFUSED_NOT_APPROVER)
            return
        except PlanStateError as exc:
            # A refusal never touches the card (it may be someone else's view of a plan still in use).
            self._ephemeral(channel, user, messages.refused_plan_state(plan_id, exc.state, str(exc)))
            return
        except SstpBotError:  # e.g. the plan does not exist
            self._ephemeral(channel, user, messages.REFUSED_BAD_BUTTON)
            return
        except Exception:  # the database, a bug: the clicker is told, the details go to the log
            logger.exception("%s of plan %s failed", name, plan_id)
            self._ephemeral(channel, user, messages.INTERNAL_ERROR)
            return
        card_channel = str(plan.channel or channel)
        card_ts = str(plan.message_ts or message_ts)
        if not approve:
            self._update(card_channel, card_ts, blocks.plan_card(plan, [messages.rejected_by(user)]))
            return
        # The decision is recorded; the fix itself runs on its own queue, so a long fix never delays
        # the next click (whose expiry is judged when it is decided).
        self._submit(self.fixes, self._run_plan, plan, user, actor, channel, card_channel, card_ts)

    def _run_plan(self, plan: Any, user: str, actor: Any, channel: str, card_channel: str, card_ts: str) -> None:
        approved = messages.approved_by(user)
        self._update(card_channel, card_ts, blocks.plan_card(plan, [approved]))

        def progress(n: int, k: int, step: dict[str, Any]) -> None:  # step n of k, counted from 1
            line = messages.running_step(n, k, str(step.get("description") or step.get("action") or ""))
            try:
                self._update(card_channel, card_ts, blocks.plan_card(plan, [approved, line], current_step=n))
            except Exception:  # showing progress must never stop a fix between two steps
                logger.exception("could not show step %s of plan %s", n, plan.id)

        def waiting(other: int) -> None:
            line = messages.waiting_for(other, str(plan.server))
            self._update(card_channel, card_ts, blocks.plan_card(plan, [approved, line]))

        try:
            outcome = self.service.execute(int(plan.id), actor, progress=progress, waiting=waiting)
        except PlanStateError as exc:
            # Approved, but it could not start (another fix of this server is running elsewhere).
            self._update(card_channel, card_ts, blocks.plan_card(plan, [approved, messages.could_not_start(str(exc))]))
            self._ephemeral(channel, user, messages.could_not_start(str(exc)))
            return
        except SstpBotError as exc:  # e.g. the server became unreachable: say so on the card
            self._update(card_channel, card_ts, blocks.plan_card(plan, [approved, messages.fix_result("FAILED", str(exc))]))
            return
        except Exception:
            logger.exception("running plan %s failed", plan.id)
            self._update(card_channel, card_ts, blocks.plan_card(plan, [approved, messages.fix_result("FAILED", messages.INTERNAL_ERROR)]))
            return
        drifted = outcome.state_changed
        final = blocks.plan_card(
            outcome.plan,
            [approved, messages.fix_result(str(outcome.state), outcome.error, drifted=drifted, remaining=_needing_a_person(outcome))],
            outcome=outcome,
        )
        self._final(card_channel, card_ts, final)
        if drifted:
            self._ephemeral(channel, user, messages.STATE_CHANGED)


def _needing_a_person(outcome: FixOutcome) -> int:
    """Critical and warning findings the re-check after a fix still reports."""
    if outcome.after is None:
        return 0
    return sum(1 for f in outcome.after.findings if f.severity in ("critical", "warning"))


def _attempted(command: grammar.Command) -> dict[str, Any]:
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


class _Replier:
    """Answers the caller only: through the command's response_url, else chat.postEphemeral."""

    def __init__(self, bot: SstpSlackBot, respond: Respond | None, channel: str, user: str) -> None:
        self._bot, self._respond, self._channel, self._user = bot, respond, channel, user

    def __call__(self, message: SlackMessage) -> None:
        if self._respond is None or not getattr(self._respond, "response_url", None):
            self._bot._ephemeral(self._channel, self._user, message.text, message)
            return
        try:
            self._respond(response_type="ephemeral", replace_original=False, **message.payload())
        except Exception as exc:
            logger.warning("could not answer through response_url: %s", type(exc).__name__)


class _ThrottledSummary:
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


def _api_error(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error", "unknown error"))
    return type(exc).__name__
