"""Cards: the bot's messages in channels (posted, edited in place, ephemeral answers), and the sweep
that brings the cards of INTERRUPTED and EXPIRED plans to their final state.

A card always reaches a final state (issue 14, items 1 and 12): a fix whose end could not be written
(the database locked or full) or a bot that crashed leaves a card saying "Running step 3 of 5"; the
sweep updates it once the plan is INTERRUPTED in the database, and remembers that it did. Likewise a
plan nobody decided within `plan_ttl_minutes` (DESIGN 6): the sweep expires it and its card loses
the buttons that would only be refused.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from bot.service import CheckOutcome
from bot.slack import blocks, messages
from bot.slack.blocks import SlackMessage
from storage.records import PlanRecord

logger = logging.getLogger(__name__)

CANNOT_POST = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}


def api_error(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error", "unknown error"))
    return type(exc).__name__


class Cards:
    """chat.postMessage / chat.update / chat.postEphemeral with the bot's error handling."""

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def post(self, channel: str, message: SlackMessage, thread_ts: str | None = None) -> str:
        kwargs: dict[str, Any] = {"channel": channel, **message.payload()}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        response = self.client.chat_postMessage(**kwargs)
        ts = str(response["ts"])
        for reply in message.thread:
            self.post_quietly(channel, reply, thread_ts or ts)
        return ts

    def post_quietly(self, channel: str, message: SlackMessage, thread_ts: str | None = None) -> str | None:
        try:
            return self.post(channel, message, thread_ts)
        except (SlackApiError, SlackRequestError, OSError) as exc:
            logger.warning("chat.postMessage failed: %s", api_error(exc))
            return None

    def update(self, channel: str, ts: str, message: SlackMessage, *, with_thread: bool = False) -> bool:
        try:
            self.client.chat_update(channel=channel, ts=ts, **message.payload())
        except (SlackApiError, SlackRequestError, OSError) as exc:
            logger.warning("chat.update failed: %s", api_error(exc))
            return False
        if with_thread:
            for reply in message.thread:
                self.post_quietly(channel, reply, ts)
        return True

    def final(self, channel: str, ts: str, message: SlackMessage) -> str | None:
        """Put a final report on its card; if the card cannot be edited, post the report as a new
        message (in the card's thread) so the result is never lost. Returns where it now lives."""
        if self.update(channel, ts, message, with_thread=True):
            return ts
        return self.post_quietly(channel, message, ts)

    def ephemeral(self, channel: str, user: str, text: str, message: SlackMessage | None = None) -> None:
        try:
            self.client.chat_postEphemeral(channel=channel, user=user, **(message or blocks.notice(text)).payload())
        except (SlackApiError, SlackRequestError, OSError) as exc:
            logger.warning("chat.postEphemeral failed: %s", api_error(exc))

    def retire(self, outcome: CheckOutcome, line: str = messages.PLAN_STATE_LINES["SUPERSEDED"],
               *, keep: tuple[str, str] | None = None) -> None:
        """Take the buttons off the cards of the proposals this check replaced (DESIGN 6), so nobody
        clicks a plan that can no longer be approved; `line` says why on each card. Best effort: a
        click on one is refused anyway. Every check that supersedes (a slash check, a fleet check, a
        scheduled sweep, the App Home's Check button) retires the cards through here; `keep` is a
        card (channel, ts) that now shows the newer plan (a sweep's alert card moved on)."""
        for plan in outcome.superseded:
            if plan.channel and plan.message_ts and (plan.channel, plan.message_ts) != keep:
                self.update(plan.channel, plan.message_ts, blocks.plan_card(plan, [line]))


def expired_card(plan: PlanRecord) -> SlackMessage:
    """The card of a plan that expired undecided: the plan, the state line, no buttons."""
    return blocks.plan_card(plan, [messages.PLAN_STATE_LINES["EXPIRED"]])


class CardStore(Protocol):
    """What the sweep needs from the repository (`storage.repository.Repository`)."""

    def release_abandoned(self) -> list[int]: ...

    def interrupted_cards(self, limit: int = 50) -> list[PlanRecord]: ...

    def expire_due(self) -> list[int]: ...

    def expired_cards(self, limit: int = 50, plan_id: int | None = None) -> list[PlanRecord]: ...

    def mark_card(self, plan_id: int, state: str) -> None: ...


class CardSweep:
    """Every `interval` seconds (and once at start): plans this process abandoned during a database
    outage are released (INTERRUPTED, with the reason) and every INTERRUPTED plan's card says so;
    PROPOSED plans past their time are expired and every EXPIRED plan's card says so."""

    def __init__(self, cards: Cards, store: CardStore, interval: float = 15.0) -> None:
        self.cards, self.store, self.interval = cards, store, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> int:
        """One pass; returns the number of cards brought up to date."""
        return self._interrupted() + self._expired()

    def _interrupted(self) -> int:
        try:
            self.store.release_abandoned()
            plans = self.store.interrupted_cards()
        except Exception as exc:  # the database is still away: next time
            logger.warning("cards of interrupted plans: database unavailable (%s)", type(exc).__name__)
            return 0
        lines = [messages.PLAN_STATE_LINES["INTERRUPTED"]]
        return sum(self._show(plan, "INTERRUPTED", blocks.plan_card(plan, [*lines, messages.interrupted_hint(str(plan.server))]))
                   for plan in plans)

    def _expired(self, plan_id: int | None = None) -> int:
        try:
            if plan_id is None:
                self.store.expire_due()
            plans = self.store.expired_cards(plan_id=plan_id)
        except Exception as exc:  # the database is still away: next time
            logger.warning("cards of expired plans: database unavailable (%s)", type(exc).__name__)
            return 0
        return sum(self._show(plan, "EXPIRED", expired_card(plan)) for plan in plans)

    def show_expired(self, plan_id: int) -> None:
        """A click found plan `plan_id` EXPIRED: its card says so now (unless it shows a newer plan)."""
        self._expired(plan_id)

    def _show(self, plan: PlanRecord, state: str, card: SlackMessage) -> bool:
        """Put `card` on the plan's card and remember that it shows `state`."""
        if not (plan.channel and plan.message_ts) or not self.cards.update(plan.channel, plan.message_ts, card):
            return False
        try:
            self.store.mark_card(plan.id, state)
        except Exception as exc:
            logger.warning("could not remember the card of plan %s: %s", plan.id, type(exc).__name__)
            return False
        return True

    def _loop(self) -> None:
        while True:
            self.sweep()
            if self._stop.wait(self.interval):
                return

    def start(self) -> CardSweep:
        self._thread = threading.Thread(target=self._loop, name="sstp-cards", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
