"""Block Kit rendering: every message the bot posts or updates is built here, within Slack's limits.

Limits enforced (https://api.slack.com/reference/block-kit): at most 50 blocks per message, 3,000
characters per section text, 150 per header, 300 for a confirm dialog's text. What does not fit
(long evidence, many findings) goes to thread replies (`SlackMessage.thread`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.slack import messages
from bot.slack.messages import escape
from commands.clientview import client_view_line, fix_verdict_line
from commands.model import CheckResult, Finding, format_time, sort_findings

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_CONFIRM_TEXT = 300
MAX_FALLBACK_TEXT = 3000
EVIDENCE_INLINE = 700  # longer evidence is cut in the card and posted whole in the thread
MAX_FINDING_SECTIONS = 30  # leaves room for header, status, plan and buttons under 50 blocks
#: Thread replies under one card at most: a server listing thousands of bindings must not make the bot
#: post thousands of messages (and spend its Slack rate limit); the rest is in the CLI and history.
MAX_THREAD_REPLIES = 50
APPROVE_ACTION = "sstp_approve"
REJECT_ACTION = "sstp_reject"


@dataclass
class SlackMessage:
    """A message to post or update: fallback text, blocks, and replies to post in its thread."""

    text: str
    blocks: list[Block]
    thread: list[SlackMessage] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        """Keyword arguments for chat.postMessage / chat.update (validated on the way out)."""
        validate(self)
        return {"text": _truncate(self.text, MAX_FALLBACK_TEXT), "blocks": [b.to_dict() for b in self.blocks]}


def validate(message: SlackMessage) -> None:
    """Raise ValueError if the message breaks a Block Kit limit (the SDK validates each block).

    Beyond the SDK: a section with neither text nor fields, or an empty text, is refused by Slack
    (`invalid_blocks`), and so is a message with no fallback text and no blocks."""
    if len(message.blocks) > MAX_BLOCKS:
        raise ValueError(f"{len(message.blocks)} blocks; Slack accepts at most {MAX_BLOCKS}")
    if not message.blocks and not message.text.strip():
        raise ValueError("an empty message")
    for block in message.blocks:
        block.validate_json()
        raw = block.to_dict()
        if raw.get("type") == "section":
            text = (raw.get("text") or {}).get("text", "")
            if not str(text).strip() and not raw.get("fields"):
                raise ValueError("a section with empty text")


# --- helpers ---------------------------------------------------------------------------------
_ENTITY_TAIL = re.compile(r"&[a-z]{0,3}$")


def _truncate(text: str, limit: int) -> str:
    """At most `limit` characters; never ends inside an escape (`&amp;` cut to `&am` shows as such)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(messages.TRUNCATED)]
    cut = _ENTITY_TAIL.sub("", cut)
    return cut + messages.TRUNCATED


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=_truncate(text, MAX_SECTION_TEXT)))


def _header(text: str) -> HeaderBlock:
    return HeaderBlock(text=PlainTextObject(text=_truncate(text, MAX_HEADER_TEXT), emoji=True))


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=_truncate(text, MAX_SECTION_TEXT))])


def _chunks(lines: Iterable[str], limit: int = MAX_SECTION_TEXT) -> list[str]:
    """Group lines into texts of at most `limit` characters (a single long line is cut)."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        line = _truncate(line, limit)
        if current and len(current) + 1 + len(line) > limit:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return chunks


def _sections(lines: Sequence[str], max_sections: int) -> tuple[list[Block], list[str]]:
    """Sections for `lines`; lines that do not fit in `max_sections` are returned for the thread."""
    chunks = _chunks(lines)
    blocks: list[Block] = [_section(c) for c in chunks[:max_sections]]
    rest = [line for chunk in chunks[max_sections:] for line in chunk.split("\n")]
    return blocks, rest


def _rows(rows: Sequence[str], room: int) -> list[Block]:
    """One-line rows in at most `room` blocks; rows that do not fit are counted ("... and 12 more"),
    never dropped silently. For answers seen only by the caller, which have no thread."""
    blocks, rest = _sections(rows, max_sections=room)
    if not rest:
        return blocks
    blocks, rest = _sections(rows, max_sections=room - 1)
    return [*blocks, _context(messages.and_more(len(rest)))]


def _code_replies(title: str, body: str) -> list[SlackMessage]:
    """Thread replies carrying `body` in code blocks, each within the section limit."""
    # Server-supplied text: escaped (no <!channel>, links or user mentions) and unable to close the
    # code block early; escaped before it is cut, so every part stays within the section limit.
    inert = escape(body).replace("```", "`\u200b``")
    parts = _chunks(inert.splitlines(), MAX_SECTION_TEXT - 10) or [""]
    replies = []
    for n, part in enumerate(parts[: MAX_BLOCKS - 1]):
        blocks: list[Block] = [_section(title)] if n == 0 else []
        blocks.append(_section(f"```{part}```"))
        replies.append(SlackMessage(text=title, blocks=blocks))
    return replies


def when(moment: datetime | None) -> str:
    return format_time(moment) if moment is not None else "?"


def _evidence_text(evidence: dict[str, Any]) -> str:
    lines = []
    for key, value in evidence.items():
        shown = value if isinstance(value, str) else json.dumps(value, default=str)
        if "`" not in shown and "\n" not in shown and len(shown) <= 200:
            shown = f"`{shown}`"  # literal: values like *:443: must not turn into mrkdwn
        lines.append(f"• `{escape(str(key))}`: {escape(shown)}")
    return "\n".join(lines)


# --- progress messages -----------------------------------------------------------------------
def checking(server: str) -> SlackMessage:
    text = messages.checking(server)
    return SlackMessage(text=text, blocks=[_section(text)])


def checking_fleet(count: int, what: str) -> SlackMessage:
    text = messages.checking_fleet(count, what)
    return SlackMessage(text=text, blocks=[_section(text)])


def notice(text: str) -> SlackMessage:
    text = text if text.strip() else messages.INTERNAL_ERROR  # Slack refuses an empty section
    return SlackMessage(text=text, blocks=[_section(text)])


# --- the check report ------------------------------------------------------------------------
def finding_text(finding: Finding) -> tuple[str, bool]:
    """The section text of a finding, and whether its evidence was cut (full copy goes to the thread)."""
    emoji = messages.SEVERITY_EMOJI.get(finding.severity, ":grey_question:")
    head = f"{emoji} *{escape(finding.title)}* `{escape(finding.id)}`\n{escape(finding.detail)}"
    evidence = _evidence_text(finding.evidence)
    cut = len(evidence) > EVIDENCE_INLINE
    if cut:
        evidence = _truncate(evidence, EVIDENCE_INLINE) + "\n" + messages.EVIDENCE_IN_THREAD
    text = f"{head}\n{evidence}" if evidence else head
    if len(text) > MAX_SECTION_TEXT:
        return _truncate(text, MAX_SECTION_TEXT - len(messages.EVIDENCE_IN_THREAD) - 1) + "\n" + messages.EVIDENCE_IN_THREAD, True
    return text, cut


def step_lines(steps: Sequence[dict[str, Any]], markers: Sequence[str] | None = None) -> list[str]:
    lines = []
    for n, step in enumerate(steps, start=1):
        mark = f"{markers[n - 1]} " if markers is not None else ""
        flag = f" {messages.PLAN_DISRUPTIVE}" if step.get("disruptive") else ""
        lines.append(f"{mark}{n}. {escape(str(step.get('description', '')))} `{escape(str(step.get('action', '')))}`{flag}")
    return lines


def _confirm_text(server: str, steps: Sequence[dict[str, Any]], vpn_users: int | None = None) -> str:
    """Every step in 300 characters (the descriptions when they fit, else the action names), then what
    the disruptive steps cost: the number of VPN users they drop, which is never cut off."""
    def listed(key: str) -> list[str]:
        return [
            f"{n}. {s.get(key) or s.get('action', '')}" + (" (disruptive)" if s.get("disruptive") else "")
            for n, s in enumerate(steps, start=1)
        ]

    cost = " " + messages.confirm_users(vpn_users) if any(s.get("disruptive") for s in steps) else ""
    room = MAX_CONFIRM_TEXT - len(cost)
    text = messages.confirm_text(server, listed("description"))
    if len(text) > room:
        text = messages.confirm_text(server, listed("action"))
    return _truncate(text, room) + cost


def plan_buttons(plan_id: int, server: str, steps: Sequence[dict[str, Any]], vpn_users: int | None = None) -> ActionsBlock:
    """Approve (with a confirm dialog listing the steps) and Reject; each button's value is the plan id only."""
    confirm_text = _confirm_text(server, steps, vpn_users)
    confirm = ConfirmObject(
        title=PlainTextObject(text=messages.CONFIRM_TITLE),
        text=PlainTextObject(text=confirm_text),
        confirm=PlainTextObject(text=messages.CONFIRM_YES),
        deny=PlainTextObject(text=messages.CONFIRM_NO),
        style="danger" if any(s.get("disruptive") for s in steps) else "primary",
    )
    return ActionsBlock(
        block_id=f"sstp_plan_{plan_id}",
        elements=[
            ButtonElement(
                text=PlainTextObject(text=messages.APPROVE),
                action_id=APPROVE_ACTION,
                value=str(plan_id),
                style="primary",
                confirm=confirm,
            ),
            ButtonElement(
                text=PlainTextObject(text=messages.REJECT),
                action_id=REJECT_ACTION,
                value=str(plan_id),
                style="danger",
            ),
        ],
    )


def _findings_blocks(server: str, findings: Sequence[Finding], max_sections: int) -> tuple[list[Block], list[SlackMessage]]:
    blocks: list[Block] = []
    thread: list[SlackMessage] = []
    ordered = sort_findings(list(findings))
    for finding in ordered[:max_sections]:
        text, cut = finding_text(finding)
        blocks.append(_section(text))
        if cut:
            body = json.dumps(finding.evidence, indent=2, default=str)
            thread.extend(_code_replies(messages.evidence_reply(server, finding.title), body))
    rest = ordered[max_sections:]
    if rest:
        blocks.append(_context(messages.more_in_thread(len(rest))))
        for finding in rest:
            text, _ = finding_text(finding)
            thread.append(notice(text))
            body = json.dumps(finding.evidence, indent=2, default=str)
            if len(body) > EVIDENCE_INLINE:
                thread.extend(_code_replies(messages.evidence_reply(server, finding.title), body))
    if len(thread) > MAX_THREAD_REPLIES:
        left_out = len(thread) - (MAX_THREAD_REPLIES - 1)
        thread = [*thread[:MAX_THREAD_REPLIES - 1], notice(messages.thread_cut(server, left_out))]
    return blocks, thread


def report(result: CheckResult, plan_id: int | None = None, expires_at: datetime | None = None) -> SlackMessage:
    """The report of one check: status, findings, and the plan with Approve/Reject when one was proposed."""
    status_line = messages.report_status(result.server, result.status, len(result.findings), when(result.checked_at))
    blocks: list[Block] = [_header(f"SSTP check: {result.server}"), _section(status_line)]
    thread: list[SlackMessage] = []
    if result.error_kind is not None:
        blocks.append(_section(messages.report_error(result.error_kind, result.error_message or "")))
    if (seen := client_view_line(result.snapshot, full_hashes=False)) is not None:
        blocks.append(_context(escape(seen)))  # DESIGN 11: what VPN clients get
    if result.findings:
        blocks.append(DividerBlock())
        found, thread = _findings_blocks(result.server, result.findings, MAX_FINDING_SECTIONS)
        blocks.extend(found)
    if result.plan is not None and plan_id is not None:
        steps = [s.to_json() for s in result.plan.steps]
        blocks.append(DividerBlock())
        plan_blocks, rest = _sections([messages.PLAN_TITLE, *step_lines(steps)], max_sections=MAX_BLOCKS - len(blocks) - 4)
        blocks.extend(plan_blocks)
        if rest:
            thread.append(notice("\n".join(rest)))
        blocks.append(_section(messages.plan_vpn_users(result.vpn_connections)))
        blocks.append(_context(messages.plan_footer(plan_id, expires_at)))
        blocks.append(plan_buttons(plan_id, result.server, steps, result.vpn_connections))
    return SlackMessage(text=status_line, blocks=blocks, thread=thread)


# --- the plan card after a decision ----------------------------------------------------------
def plan_card(
    plan: Any,
    state_lines: Sequence[str],
    *,
    current_step: int | None = None,
    outcome: Any | None = None,
) -> SlackMessage:
    """The card of a decided plan (approved, running step i of k, finished, rejected, expired...): no buttons.

    `plan` is a PlanRecord (id, server, state, steps); `outcome` a FixOutcome once the fix ran.
    """
    steps: list[dict[str, Any]] = list(plan.steps)
    markers: list[str] | None = None
    if outcome is not None:
        # Rollback steps (DESIGN 5 [2]) follow the planned ones; they get their own result lines below.
        results = [r for r in outcome.steps if not getattr(r, "rollback", False)]
        markers = [
            (":white_check_mark:" if results[n].ok else ":x:") if n < len(results) else ":white_small_square:"
            for n in range(len(steps))
        ]
    elif current_step is not None:
        markers = [
            ":white_check_mark:" if n + 1 < current_step else ":gear:" if n + 1 == current_step else ":white_small_square:"
            for n in range(len(steps))
        ]
    blocks: list[Block] = [_header(f"SSTP fix: {plan.server}")]
    blocks.extend(_section(line) for line in state_lines)
    blocks.append(DividerBlock())
    plan_blocks, rest = _sections([messages.PLAN_TITLE, *step_lines(steps, markers)], max_sections=10)
    blocks.extend(plan_blocks)
    thread: list[SlackMessage] = [notice("\n".join(rest))] if rest else []
    if outcome is not None:
        details = [
            messages.step_result_line(r.ok, r.changed, r.action, r.detail) for r in outcome.steps
        ]
        if details:
            detail_blocks, rest = _sections(details, max_sections=5)
            blocks.extend(detail_blocks)
            if rest:
                thread.append(notice("\n".join(rest)))
        blocks.append(DividerBlock())
        blocks.append(_section(messages.RECHECK_TITLE))
        after: CheckResult | None = outcome.after
        if after is None:
            blocks.append(_section(messages.NO_RECHECK))
        else:
            blocks.append(
                _section(messages.report_status(after.server, after.status, len(after.findings), when(after.checked_at)))
            )
            if after.error_kind is not None:
                blocks.append(_section(messages.report_error(after.error_kind, after.error_message or "")))
            if (verdict := fix_verdict_line(after.snapshot)) is not None:
                blocks.append(_section(escape(verdict)))  # the fix as a VPN client sees it (DESIGN 11)
            found, more = _findings_blocks(after.server, after.findings, max_sections=MAX_BLOCKS - len(blocks) - 2)
            blocks.extend(found)
            thread.extend(more)
    blocks.append(_context(messages.plan_footer(int(plan.id), None)))
    text = " ".join(state_lines) if state_lines else f"Plan #{plan.id}"
    return SlackMessage(text=text, blocks=blocks, thread=thread)


# --- fleet summary ---------------------------------------------------------------------------
@dataclass
class FleetLine:
    server: str
    status: str | None = None  # None while the check runs
    findings: int = 0
    error_kind: str | None = None


def fleet_summary(what: str, lines: Sequence[FleetLine]) -> SlackMessage:
    """One line per server, updated as servers finish; the details are thread replies."""
    total = len(lines)
    done = [line for line in lines if line.status is not None]
    count = {s: sum(1 for line in done if line.status == s) for s in ("healthy", "unhealthy", "error")}
    if len(done) < total:
        headline = messages.checking_fleet(total, what) + " " + messages.fleet_progress(len(done), total)
    else:
        headline = messages.fleet_done(total, count["healthy"], count["unhealthy"], count["error"])
    rows = []
    for line in lines:
        if line.status is None:
            rows.append(f":hourglass_flowing_sand: {escape(line.server)}")
        elif line.status == "error":
            rows.append(f"{messages.STATUS_EMOJI['error']} {escape(line.server)}: {escape(line.error_kind or 'error')}")
        else:
            detail = "healthy" if line.status == "healthy" else f"{line.findings} finding{'s' if line.findings != 1 else ''}"
            rows.append(f"{messages.STATUS_EMOJI.get(line.status, '')} {escape(line.server)}: {detail}")
    blocks: list[Block] = [_header(f"SSTP fleet check: {what}"), _section(headline)]
    row_blocks, rest = _sections(rows, max_sections=MAX_BLOCKS - 3)
    blocks.extend(row_blocks)
    if rest:
        blocks.append(_context(messages.more_in_thread(len(rest))))
    return SlackMessage(text=headline, blocks=blocks)


# --- history, status, servers, help ----------------------------------------------------------
def history(server: str, entries: Sequence[Any]) -> SlackMessage:
    rows = []
    for entry in entries:
        if entry.kind == "check" and entry.check is not None:
            c = entry.check
            what = c.status + (f" ({c.error_kind})" if c.error_kind else f", {len(c.findings)} findings")
            rows.append(f"`{when(entry.at)}` check #{c.id} by {_who(c.actor)}: {escape(what)}")
        elif entry.plan is not None:
            p = entry.plan
            by = f", approved by {_who(p.approver)}" if p.approver else ""
            rows.append(f"`{when(entry.at)}` plan #{p.id} ({len(p.steps)} steps) {escape(p.state)}{by}")
    title = messages.history_title(server)
    blocks: list[Block] = [_header(title)]
    blocks.extend(_rows(rows or [messages.NO_HISTORY], room=MAX_BLOCKS - 1))
    return SlackMessage(text=title, blocks=blocks)


def status(records: Sequence[Any], never_checked: Sequence[str] = ()) -> SlackMessage:
    """The latest check of each server, then the inventory's servers that were never checked."""
    rows = []
    for r in records:
        emoji = messages.STATUS_EMOJI.get(r.status, ":grey_question:")
        what = f"{r.error_kind}" if r.error_kind else f"{len(r.findings)} findings"
        plan = f", plan #{r.plan_id}" if r.plan_id else ""
        rows.append(f"{emoji} *{escape(r.server)}* `{when(r.finished_at or r.started_at)}` {escape(what)}{plan}")
    rows.extend(messages.never_checked(escape(name)) for name in never_checked)
    blocks: list[Block] = [_header(messages.STATUS_TITLE)]
    blocks.extend(_rows(rows or [messages.NO_STATUS], room=MAX_BLOCKS - 1))
    return SlackMessage(text=messages.STATUS_TITLE, blocks=blocks)


def servers(inventory: Sequence[Any]) -> SlackMessage:
    rows = [
        f"*{escape(s.name)}* `{escape(s.host)}:{s.port}`"
        + (f" group `{escape(s.group)}`" if s.group else "")
        + (f" public name `{escape(s.public_name)}`" if s.public_name else "")
        for s in inventory
    ]
    blocks: list[Block] = [_header(messages.SERVERS_TITLE)]
    blocks.extend(_rows(rows or [messages.NO_SERVERS], room=MAX_BLOCKS - 1))
    return SlackMessage(text=messages.SERVERS_TITLE, blocks=blocks)


def help_message(*, operator: bool, approver: bool, two_person_rule: bool, channel_allowed: bool) -> SlackMessage:
    """Only what the caller may do here."""
    if not channel_allowed:
        lines = [messages.HELP_CHANNEL_NOT_ALLOWED]
    elif not operator:
        lines = [messages.HELP_NOT_OPERATOR]
    else:
        lines = list(messages.HELP_OPERATOR_LINES)
    if channel_allowed:
        lines.append(messages.HELP_APPROVER_LINE if approver else messages.HELP_NOT_APPROVER_LINE)
        if approver and two_person_rule:
            lines.append(messages.HELP_TWO_PERSON)
    blocks: list[Block] = [_header(messages.HELP_TITLE), _section("\n".join(lines))]
    return SlackMessage(text=messages.HELP_TITLE, blocks=blocks)


def _who(actor: str | None) -> str:
    if not actor:
        return "?"
    if actor[:1] in ("U", "W") and actor.isalnum():
        return f"<@{actor}>"
    return escape(actor)
