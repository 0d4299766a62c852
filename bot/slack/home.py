"""The App Home tab (DESIGN 8 [2]): the fleet, worst first, published with `views.publish`.

Each server shows its latest status, open findings (critical and warning IDs) and SSTP certificate
expiry; operators also get a Check button. A Home view holds at most 100 blocks: the worst servers
get a section each, the rest are named in compact per-status lists, so every server is named even
for a fleet of hundreds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.operations import FleetRow, ForecastCache, fleet_rows
from bot.slack.messages import STATUS_EMOJI, escape, superseded_from_home
from bot.slack.ports import slack_actor
from commands.model import format_time

logger = logging.getLogger(__name__)

HOME_CHECK_ACTION = "sstp_home_check"
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
#: Servers shown with a section (and a Check button) of their own; the rest are listed by name.
DETAILED = 80
NEVER_EMOJI = ":white_circle:"
STATUS_TITLES = {"error": "Could not check", "unhealthy": "Unhealthy", None: "Never checked", "healthy": "Healthy"}


def _expiry(row: FleetRow) -> str:
    if row.not_after is None or row.days_left is None:
        return "certificate: unknown"
    if row.days_left < 0:
        return f"certificate expired {row.not_after:%Y-%m-%d} ({-row.days_left} d ago)"
    return f"certificate expires {row.not_after:%Y-%m-%d} ({row.days_left} d)"


def server_line(row: FleetRow) -> str:
    emoji = STATUS_EMOJI.get(row.status or "", NEVER_EMOJI)
    if row.status is None:
        state = "never checked"
    elif row.status == "error":
        state = f"could not check ({escape(row.error_kind or 'error')})"
    else:
        state = row.status
    parts = [f"{emoji} *{escape(row.server)}*  {state}"]
    if row.findings:
        shown = ", ".join(f"`{escape(i)}`" for i in row.findings[:8])
        more = f" +{len(row.findings) - 8}" if len(row.findings) > 8 else ""
        parts.append(f"open findings: {shown}{more}")
    parts.append(_expiry(row))
    if row.checked_at is not None:
        parts.append(f"checked {format_time(row.checked_at)}")
    return "\n".join(parts)[:MAX_SECTION_TEXT]


def _name_lists(rows: Sequence[FleetRow], room: int) -> list[Block]:
    """Compact sections naming `rows` by status, at most `room` blocks; what does not fit is counted."""
    out: list[Block] = []
    groups: dict[str | None, list[str]] = {}
    for row in rows:
        groups.setdefault(row.status, []).append(row.server)
    for status, names in groups.items():
        title = f"{STATUS_EMOJI.get(status or '', NEVER_EMOJI)} *{STATUS_TITLES.get(status, status)}* ({len(names)}): "
        text = title
        for n, name in enumerate(names):
            piece = escape(name) + (", " if n + 1 < len(names) else "")
            if len(text) + len(piece) > MAX_SECTION_TEXT - 40:
                if len(out) + 1 >= room:
                    text += f"... and {len(names) - n} more"
                    break
                out.append(SectionBlock(text=MarkdownTextObject(text=text)))
                text = ""
            text += piece
        if len(out) >= room:
            break
        out.append(SectionBlock(text=MarkdownTextObject(text=text)))
    return out[:room]


def home_view(rows: Sequence[FleetRow], *, operator: bool, now: datetime) -> View:
    """The Home view of the fleet (`rows` worst first)."""
    counts: dict[str | None, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    summary = ", ".join(f"{counts[s]} {STATUS_TITLES[s].lower()}" for s in STATUS_TITLES if counts.get(s))
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text="SSTP fleet")),
        ContextBlock(elements=[MarkdownTextObject(
            text=f"{len(rows)} server(s): {summary or 'no servers in the inventory'}. Updated {format_time(now)}."
            + ("" if operator else " Only operators can run checks."))]),
        DividerBlock(),
    ]
    detailed = list(rows[:DETAILED])
    rest = list(rows[DETAILED:])
    # Leave room for the compact lists of the rest, if any.
    room_for_rest = 10 if rest else 0
    detailed = detailed[: MAX_VIEW_BLOCKS - len(blocks) - room_for_rest - 1]
    for row in detailed:
        accessory = None
        if operator:
            accessory = ButtonElement(text=PlainTextObject(text="Check"), action_id=HOME_CHECK_ACTION,
                                      value=row.server[:2000])
        blocks.append(SectionBlock(text=MarkdownTextObject(text=server_line(row)), accessory=accessory))
    rest = list(rows[len(detailed):])
    if rest:
        blocks.append(DividerBlock())
        blocks.extend(_name_lists(rest, MAX_VIEW_BLOCKS - len(blocks)))
    return View(type="home", blocks=blocks[:MAX_VIEW_BLOCKS])


class FleetHome:
    """Publishes the Home tab and answers its Check buttons."""

    def __init__(self, app: Any, service: Any, clock: Callable[[], datetime] | None = None) -> None:
        self.app = app
        self.service = service
        self.bot = app.sstp
        # The Slack adapter's tests use a fake service without a clock.
        self.clock: Callable[[], datetime] = clock or getattr(service, "clock", None) or (lambda: datetime.now(UTC))
        self.cache = ForecastCache()

    def publish(self, user: str) -> None:
        operator = self.bot.auth.is_operator(user)
        now = self.clock()
        view = home_view(fleet_rows(self.service, self.cache, now), operator=operator, now=now)
        try:
            self.app.client.views_publish(user_id=user, view=view)
        except (SlackApiError, SlackRequestError, OSError) as exc:
            logger.warning("views.publish failed: %s", type(exc).__name__)

    def on_home_opened(self, event: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return
        user = str(event.get("user", ""))
        if user:
            self._submit(self.bot.queries, self.publish, user)

    def on_check(self, ack: Callable[..., None], body: dict[str, Any]) -> None:
        ack()
        user = str((body.get("user") or {}).get("id", ""))
        actions = body.get("actions") or [{}]
        self._submit(self.bot.commands, self._check, user, str(actions[0].get("value", "")))

    def _submit(self, pool: Any, fn: Callable[..., None], *args: Any) -> None:
        """Run on the Slack bot's own pools, so its drain() and shutdown cover the Home tab's work too."""
        submit = self.bot.submit
        submit(pool, fn, *args)

    def _check(self, user: str, name: str) -> None:
        if not self.bot.auth.is_operator(user):
            self.service.audit(actor=user, action="check", outcome="refused: not an operator", server=name[:255],
                               details={"source": "slack", "from": "app_home"})
            self.publish(user)
            return
        try:
            server = self.service.resolve_targets([name])[0]
        except Exception:  # not in the inventory (any more): nothing is run
            self.service.audit(actor=user, action="check", outcome="refused: not in the inventory",
                               details={"source": "slack", "from": "app_home", "server": name[:255]})
            self.publish(user)
            return
        # The Home tab is a personal view: no approver sees it and a plan shown there could not be
        # clicked on its own card (DESIGN 8, `approvals`). So this check proposes nothing; it still
        # supersedes older proposals (DESIGN 6), and their cards lose their buttons like after
        # `/sstp check`, pointing to the command that makes a fresh plan in the channel.
        for outcome in self.service.check([server], slack_actor(user), propose=False):
            self.bot.cards.retire(outcome, superseded_from_home(server.name))
        self.publish(user)


def register_home(app: Any, service: Any) -> FleetHome:
    """Wire the App Home tab into a bolt app made by `bot.slack.app.create_app`."""
    home = FleetHome(app, service)

    def home_opened(event: dict[str, Any]) -> None:
        home.on_home_opened(event)

    app.event("app_home_opened")(home_opened)
    app.action(HOME_CHECK_ACTION)(home.on_check)
    return home
