"""Approve / Reject: who clicked what, on which card; the decision; the fix on its own queue.

A click is accepted only when it reads as Slack's own `block_actions` shape (issue 14, item 11): a
user object with a user ID (U… or W…, never a user group's S…), one button whose value is a plan ID,
clicked on *that plan's* card (the channel and message recorded when the card was posted; a plan
made by the CLI has no card, so no click can approve it). Anything else is refused and audited.
Legacy `interactive_message` payloads never reach these listeners (see `app.register`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt import BoltContext

from bot.service import FixOutcome
from bot.slack import blocks, messages
from bot.slack.ports import slack_actor
from commands.errors import NotAuthorised, PlanStateError, SstpBotError

if TYPE_CHECKING:
    from bot.slack.app import SstpSlackBot

logger = logging.getLogger(__name__)

PLAN_ID_RE = re.compile(r"^[0-9]{1,18}$")
CARD_ATTACH_WAIT_SECONDS = 2.0  # how long a click waits for its plan to learn its card (see _card_attached)
USER_ID_RE = re.compile(r"^[UW][A-Z0-9]{2,30}$")  # user groups (S…) and anything else are not people


@dataclass(frozen=True)
class Click:
    """The parts of a `block_actions` payload a decision needs, read defensively."""

    user: str
    team: str | None  # the clicker's own workspace
    connect: bool  # a Slack Connect user: their workspace is not the one the card lives in
    channel: str
    message_ts: str
    value: str
    problem: str | None  # why it cannot be a decision (None: it can)


def read_click(body: dict[str, Any], context: BoltContext) -> Click:
    user_obj = body.get("user")
    user = str(user_obj.get("id", "")) if isinstance(user_obj, dict) else ""
    # A Slack Connect user belongs to another workspace: their own team ID is on the user object.
    own_team = str(user_obj.get("team_id") or "") if isinstance(user_obj, dict) else ""
    home = body.get("team")
    home_team = str(home.get("id") or "") if isinstance(home, dict) else str(context.team_id or "")
    team = own_team or str(context.actor_team_id or context.team_id or "") or None
    connect = bool(team and home_team and team != home_team)
    container: dict[str, Any] = _dict(body.get("container"))
    channel = str(context.channel_id or container.get("channel_id") or "")
    message = _dict(body.get("message"))
    message_ts = str(container.get("message_ts") or message.get("ts") or "")
    actions = body.get("actions")
    action: dict[str, Any] | None = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else None
    value = str(action.get("value", "")) if action is not None else ""
    problem = None
    if not isinstance(user_obj, dict) or not USER_ID_RE.match(user):
        problem = "refused: malformed click (no user ID)"
    elif action is None:
        problem = "refused: malformed click (no action)"
    elif container.get("is_ephemeral"):
        problem = "refused: click on an ephemeral message"
    return Click(user=user, team=team, connect=connect, channel=channel, message_ts=message_ts, value=value[:40], problem=problem)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class Approvals:
    """The Approve/Reject listeners and the fix they start."""

    def __init__(self, bot: SstpSlackBot) -> None:
        self.bot = bot

    def on_approve(self, ack: Callable[..., None], body: dict[str, Any], context: BoltContext) -> None:
        ack()
        self.bot.submit(self.bot.decisions, self.decide, read_click(body, context), True)

    def on_reject(self, ack: Callable[..., None], body: dict[str, Any], context: BoltContext) -> None:
        ack()
        self.bot.submit(self.bot.decisions, self.decide, read_click(body, context), False)

    def _refuse(self, click: Click, name: str, outcome: str, text: str, plan_id: int | None = None) -> None:
        details: dict[str, Any] = {"channel": click.channel, "source": "slack"}
        if plan_id is None:
            details["value"] = click.value
        if click.connect:
            details["team_id"] = click.team
        self.bot.service.audit(actor=click.user or "unknown", action=name, outcome=outcome, plan_id=plan_id, details=details)
        if click.user and click.channel and USER_ID_RE.match(click.user):
            self.bot.cards.ephemeral(click.channel, click.user, text)

    def decide(self, click: Click, approve: bool) -> None:
        bot = self.bot
        name = "approve" if approve else "reject"
        if click.problem:
            self._refuse(click, name, click.problem, messages.REFUSED_MALFORMED_CLICK)
            return
        if not PLAN_ID_RE.match(click.value):
            self._refuse(click, name, "refused: bad button value", messages.REFUSED_BAD_BUTTON)
            return
        plan_id = int(click.value)
        try:
            plan = bot.service.get_plan(plan_id)
        except SstpBotError:
            plan = None  # not found: the service refuses (and audits) it below
        except Exception:
            logger.exception("%s of plan %s failed", name, plan_id)
            bot.cards.ephemeral(click.channel, click.user, messages.INTERNAL_ERROR)
            return
        if plan is not None and plan.message_ts is None and plan.state == "PROPOSED":
            plan = self._card_attached(plan_id, plan)
        if plan is not None and (plan.channel != click.channel or plan.message_ts != click.message_ts):
            # Not the plan's own card: a crafted click, a CLI plan (no card), a copy of a button.
            self._refuse(click, name, "refused: not the plan's card", messages.REFUSED_NOT_THE_CARD, plan_id)
            return
        authorised = bot.auth.is_approver(click.user)
        actor = slack_actor(click.user)
        try:
            decide = bot.service.approve if approve else bot.service.reject
            plan = decide(plan_id, actor, authorised=authorised)
        except NotAuthorised:
            bot.cards.ephemeral(click.channel, click.user, messages.REFUSED_OWN_REQUEST if authorised else messages.REFUSED_NOT_APPROVER)
            return
        except PlanStateError as exc:
            # A refusal never touches the card (it may be someone else's view of a plan still in use),
            # except for an expired plan: nothing can decide it any more, so its card (this one: checked
            # above) loses the buttons that would only be refused, like a superseded plan's.
            bot.cards.ephemeral(click.channel, click.user, messages.refused_plan_state(plan_id, exc.state, str(exc)))
            if exc.state == "EXPIRED" and plan is not None:
                bot.show_expired(plan)
            return
        except SstpBotError:  # e.g. the plan does not exist
            bot.cards.ephemeral(click.channel, click.user, messages.REFUSED_BAD_BUTTON)
            return
        except Exception:  # the database, a bug: the clicker is told, the details go to the log
            logger.exception("%s of plan %s failed", name, plan_id)
            bot.cards.ephemeral(click.channel, click.user, messages.INTERNAL_ERROR)
            return
        if click.connect:
            # The decision's audit event names the user ID only; a Slack Connect user's ID is only
            # meaningful with their own workspace, so that is recorded beside it.
            bot.service.audit(
                actor=click.user, action=name, outcome="ok: Slack Connect user", plan_id=plan_id,
                details={"team_id": click.team, "channel": click.channel, "source": "slack"},
            )
        card_channel = str(plan.channel or click.channel)
        card_ts = str(plan.message_ts or click.message_ts)
        if not approve:
            bot.cards.update(card_channel, card_ts, blocks.plan_card(plan, [messages.rejected_by(click.user)]))
            return
        # The decision is recorded; the fix itself runs on its own queue, so a long fix never delays
        # the next click (whose expiry is judged when it is decided).
        bot.submit(bot.fixes, self.run_plan, plan, click.user, actor, click.channel, card_channel, card_ts)

    def _card_attached(self, plan_id: int, plan: Any) -> Any:
        """A proposal whose card is still being posted: a fleet check's detail card and an alert's
        report show their buttons a moment before the plan records where they live (their message
        ID is only known once posted). Wait that moment (bounded) rather than refuse
        the click; a plan that never gets a card (made by the CLI) is refused after it."""
        deadline = time.monotonic() + CARD_ATTACH_WAIT_SECONDS
        while plan.message_ts is None and time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                plan = self.bot.service.get_plan(plan_id)
            except Exception:
                return plan
        return plan

    def run_plan(self, plan: Any, user: str, actor: Any, channel: str, card_channel: str, card_ts: str) -> None:
        cards = self.bot.cards
        approved = messages.approved_by(user)
        cards.update(card_channel, card_ts, blocks.plan_card(plan, [approved]))

        def progress(n: int, k: int, step: dict[str, Any]) -> None:  # step n of k, counted from 1
            line = messages.running_step(n, k, str(step.get("description") or step.get("action") or ""))
            try:
                cards.update(card_channel, card_ts, blocks.plan_card(plan, [approved, line], current_step=n))
            except Exception:  # showing progress must never stop a fix between two steps
                logger.exception("could not show step %s of plan %s", n, plan.id)

        def waiting(other: int) -> None:
            line = messages.waiting_for(other, str(plan.server))
            cards.update(card_channel, card_ts, blocks.plan_card(plan, [approved, line]))

        try:
            outcome = self.bot.service.execute(int(plan.id), actor, progress=progress, waiting=waiting)
        except PlanStateError as exc:
            # Approved, but it could not start (another fix of this server is running elsewhere).
            cards.update(card_channel, card_ts, blocks.plan_card(plan, [approved, messages.could_not_start(str(exc))]))
            cards.ephemeral(channel, user, messages.could_not_start(str(exc)))
            return
        except SstpBotError as exc:  # e.g. the server became unreachable: say so on the card
            cards.update(card_channel, card_ts, blocks.plan_card(plan, [approved, messages.fix_result("FAILED", str(exc))]))
            return
        except Exception:
            logger.exception("running plan %s failed", plan.id)
            self._after_unexpected(plan, approved, card_channel, card_ts)
            return
        drifted = outcome.state_changed
        state = str(getattr(outcome.plan, "state", "") or outcome.state)
        final = blocks.plan_card(
            outcome.plan,
            [approved, messages.fix_result(state, outcome.error, drifted=drifted, remaining=needing_a_person(outcome))],
            outcome=outcome,
        )
        cards.final(card_channel, card_ts, final)
        if drifted:
            cards.ephemeral(channel, user, messages.STATE_CHANGED)

    def _after_unexpected(self, plan: Any, approved: str, card_channel: str, card_ts: str) -> None:
        """The fix raised (a bug, or a database that could not record it): the card says what the
        record says. A plan still RUNNING here is one whose end could not be written: the card sweep
        (`cards.CardSweep`) shows INTERRUPTED once the database has it."""
        try:
            recorded = self.bot.service.get_plan(int(plan.id))
            state = str(recorded.state)
        except Exception:
            recorded, state = plan, "RUNNING"
        if state in ("RUNNING", "INTERRUPTED"):
            line = messages.PLAN_STATE_LINES["INTERRUPTED"] + " " + messages.interrupted_hint(str(plan.server))
        else:
            line = messages.fix_result(state if state != "SUCCEEDED" else "FAILED", messages.INTERNAL_ERROR)
        self.bot.cards.update(card_channel, card_ts, blocks.plan_card(recorded, [approved, line]))


def needing_a_person(outcome: FixOutcome) -> int:
    """Critical and warning findings the re-check after a fix still reports."""
    if outcome.after is None:
        return 0
    return sum(1 for f in outcome.after.findings if f.severity in ("critical", "warning"))
