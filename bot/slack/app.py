"""The bolt app: `/sstp` and the Approve/Reject buttons wired to the use-case layer.

Three parts, one module each: slash commands (`slash`), approvals and the fix they start
(`approvals`), and the cards both post and edit (`cards`). This module wires them to bolt: the channel
gate is listener middleware, legacy `interactive_message` payloads and malformed clicks are refused
by a global middleware, and unexpected errors go to `app.error`.

Every listener acknowledges at once (Slack waits 3 seconds at most) and hands the work to a bounded
thread pool: one for checks (they can take minutes), one for quick answers, one for plan decisions and
one for fixes, so nothing quick waits behind something slow.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltContext
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.config import Config
from bot.metrics import instrument
from bot.slack import blocks, grammar, messages
from bot.slack.approvals import Approvals, read_click
from bot.slack.auth import Authoriser
from bot.slack.blocks import APPROVE_ACTION, REJECT_ACTION
from bot.slack.cards import Cards, CardSweep, expired_card
from bot.slack.home import register_home
from bot.slack.ports import ServicePort
from bot.slack.slash import MAX_CHECKS_PER_USER, Replier, SlashCommands, attempted_target
from bot.slack.slash import ThrottledSummary as _ThrottledSummary
from commands.errors import UsageError

__all__ = ["SLASH_COMMAND", "SstpApp", "SstpSlackBot", "_ThrottledSummary", "create_app", "make_web_client"]

logger = logging.getLogger(__name__)

SLASH_COMMAND = "/sstp"


@functools.cache
def slack_tls_context() -> ssl.SSLContext:
    """The TLS context of every Web API call of this process: what urllib builds when given none
    (`ssl.create_default_context()`: the system's trust store, hostnames checked), built once.
    Given none, urllib builds it for each call, loading the whole trust store: ~30 ms of CPU per
    chat.postMessage or chat.update, several per check card."""
    return ssl.create_default_context()


def make_web_client(token: str | None, api_url: str = "", *, timeout: int = 30, rate_limit_retries: int = 3) -> WebClient:
    """A WebClient on `api_url` (default slack.com) that honours 429 + Retry-After."""
    base_url = (api_url.rstrip("/") + "/") if api_url else WebClient.BASE_URL
    return WebClient(
        token=token,
        base_url=base_url,
        timeout=timeout,
        ssl=slack_tls_context(),
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

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        """Screen clicks before bolt reads them: bolt's own middleware indexes `actions[0]` and raises
        on a click whose `actions` is null (a 500 before anything is audited). A legacy
        `interactive_message` or a click without a readable action is answered 200 (nothing for Slack
        to retry), audited, and goes no further. Both HTTP and Socket Mode requests come through here."""
        refused = self.sstp.screen(req.body) if hasattr(self, "sstp") else None
        return refused if refused is not None else super().dispatch(req)


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
    checks_per_user: int = MAX_CHECKS_PER_USER,
    card_sweep_interval: float = 15.0,
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
        checks_per_user=checks_per_user,
    )
    bot.register(app)
    bot.start_card_sweep(card_sweep_interval)
    app.sstp = bot
    register_home(app, service)  # the App Home tab (DESIGN 8)
    instrument(app, service)  # app.metrics: /metrics and the Slack acknowledgement latency (DESIGN 13)
    app.verifies_requests = signing_secret is not None and signing_secret != ""
    app.signing_secret = signing_secret or ""
    return app


class SstpSlackBot:
    """The pools, the three parts, and their wiring to bolt."""

    def __init__(
        self,
        service: ServicePort,
        config: Config,
        client: WebClient,
        *,
        authoriser: Authoriser | None = None,
        max_workers: int = 8,
        fleet_update_interval: float = 1.0,
        checks_per_user: int = MAX_CHECKS_PER_USER,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.config = config
        self.client = client
        self.auth = authoriser or Authoriser(config.slack, client)
        self.fleet_update_interval = fleet_update_interval
        self.monotonic = monotonic
        # Separate queues so nothing quick waits behind something slow: checks can take minutes, fixes
        # longer; answers (help, status, history, servers) and approve/reject decisions take a moment.
        self.commands = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sstp-check")
        self.queries = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sstp-query")
        self.decisions = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sstp-decision")
        self.fixes = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sstp-fix")
        self._pending: set[Future[None]] = set()
        self._pending_lock = threading.Lock()
        self.cards = Cards(client)
        self.slash = SlashCommands(self, per_user=checks_per_user)
        self.approvals = Approvals(self)
        self.card_sweep: CardSweep | None = None

    # --- wiring ------------------------------------------------------------------------------
    def register(self, app: App) -> None:
        app.command(SLASH_COMMAND, middleware=[self._channel_gate_command])(self.slash.on_command)
        # block_actions only: a bare action ID would also match a legacy `interactive_message` whose
        # callback_id is the same string (bolt's attachment actions), which must never approve.
        for action_id, listener in ((APPROVE_ACTION, self.approvals.on_approve), (REJECT_ACTION, self.approvals.on_reject)):
            app.action({"type": "block_actions", "action_id": action_id}, middleware=[self._channel_gate_click])(listener)
        app.error(self._on_error)

    def start_card_sweep(self, interval: float) -> None:
        """Bring the cards of INTERRUPTED and EXPIRED plans up to date now and every `interval` seconds
        (needs the real service's repository; a test double without one has no cards to sweep)."""
        store = getattr(self.service, "repo", None)
        needs = ("release_abandoned", "interrupted_cards", "expire_due", "expired_cards", "mark_card")
        if interval > 0 and all(hasattr(store, m) for m in needs):
            self.card_sweep = CardSweep(self.cards, store, interval).start()  # type: ignore[arg-type]

    def show_expired(self, plan: Any) -> None:
        """A click found `plan` EXPIRED: take the buttons off its card (the card sweep's way when there
        is one: it leaves alone a card that now shows a newer plan, and remembers the card is done)."""
        if self.card_sweep is not None:
            self.card_sweep.show_expired(int(plan.id))
        elif plan.channel and plan.message_ts:
            self.cards.update(str(plan.channel), str(plan.message_ts), expired_card(plan))

    def _channel_gate_command(self, body: dict[str, Any], context: BoltContext, next: Callable[[], None]) -> BoltResponse | None:
        """Listener middleware: `/sstp` outside the allowed channels is refused (audited) and runs nothing.
        A usage error is still answered in the ack, whatever the channel (nothing runs either way)."""
        channel = str(context.channel_id or "")
        if self.auth.channel_allowed(channel):
            next()
            return None
        try:
            command = grammar.parse(body.get("text"))
        except UsageError:
            next()
            return None
        user = str(context.user_id or "")
        attempted = attempted_target(command)
        replier = Replier(self, context.respond, channel, user)  # the command's response_url

        def refuse() -> None:
            self.service.audit(
                actor=user, action=type(command).__name__.lower(), outcome="refused: channel not allowed",
                server=attempted.get("server"), details={"channel": channel, "source": "slack", **attempted},
            )
            replier(blocks.notice(messages.REFUSED_CHANNEL))

        self.submit(self.queries, refuse)
        return BoltResponse(status=200, body="")  # the ack: the refusal follows privately

    def _channel_gate_click(self, body: dict[str, Any], context: BoltContext, next: Callable[[], None]) -> BoltResponse | None:
        """Listener middleware: a click outside the allowed channels is refused (audited)."""
        channel = str(context.channel_id or "")
        if self.auth.channel_allowed(channel):
            next()
            return None
        click = read_click(body, context)
        name = "approve" if _action_id(body) == APPROVE_ACTION else "reject"
        plan_id = int(click.value) if click.value.isdigit() and len(click.value) <= 18 else None

        def refuse() -> None:
            self.approvals._refuse(click, name, "refused: channel not allowed", messages.REFUSED_CHANNEL, plan_id)

        self.submit(self.decisions, refuse)
        return BoltResponse(status=200, body="")

    def screen(self, body: Any) -> BoltResponse | None:
        """Only `block_actions` clicks with a readable action may reach a listener (see `SstpApp.dispatch`)."""
        if not isinstance(body, dict):
            return None
        kind = body.get("type")
        if kind == "interactive_message" or (kind == "block_actions" and not _has_action(body)):
            user_obj = body.get("user")
            user = str(user_obj.get("id", "")) if isinstance(user_obj, dict) else ""
            why = "refused: legacy interactive_message" if kind == "interactive_message" else "refused: malformed click (no action)"
            self.submit(self.decisions, self._audit_refused_click, user, why)
            return BoltResponse(status=200, body="")
        return None

    def _audit_refused_click(self, user: str, why: str) -> None:
        self.service.audit(actor=user or "unknown", action="click", outcome=why, details={"source": "slack"})

    def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        """Unexpected errors in a listener: one log line with the error type and the payload type only
        (the body is user input and may be large)."""
        logger.error("listener failed on a %s payload: %s", body.get("type") or body.get("command") or "?", type(error).__name__)

    # --- pools -------------------------------------------------------------------------------
    def submit(self, pool: ThreadPoolExecutor, fn: Callable[..., None], *args: Any) -> None:
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
        if self.card_sweep is not None:
            self.card_sweep.stop()
        for pool in (self.commands, self.queries, self.decisions, self.fixes):
            pool.shutdown(wait=wait, cancel_futures=True)


def _has_action(body: dict[str, Any]) -> bool:
    actions = body.get("actions")
    return isinstance(actions, list) and bool(actions) and isinstance(actions[0], dict) and bool(actions[0].get("action_id"))


def _action_id(body: dict[str, Any]) -> str:
    return str(body["actions"][0].get("action_id")) if _has_action(body) else ""

