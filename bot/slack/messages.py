"""Every user-facing text of the Slack adapter, so they read consistently and are easy to review.

Slack mrkdwn: `*bold*`, `_italic_`, `` `code` ``, `<@U123>` mentions a user. Texts that include
values coming from a server (evidence, error messages) are escaped by `escape` before use.
"""

from __future__ import annotations

from datetime import datetime

from commands.model import format_time

# --- usage (grammar) -------------------------------------------------------------------------
USAGE_TOO_LONG = "That command is far too long. Try `/sstp help`."
USAGE_MARKUP = "Mentions, channels and links are not accepted: type plain server names. Try `/sstp help`."
USAGE_CONTROL = "That command contains control characters. Type it again in plain text."
USAGE_HISTORY = "Usage: `/sstp history SERVER [N]`, e.g. `/sstp history vpn01 5`."


def usage_no_arguments(verb: str) -> str:
    return f"`/sstp {verb}` takes no arguments."


def usage_unknown_verb(verb: str) -> str:
    return f"Unknown command `{verb}`. Try `/sstp help`."


def usage_check_needs_target(verb: str) -> str:
    if verb == "fix":
        return "Usage: `/sstp fix SERVER`."
    return "Usage: `/sstp check SERVER...`, `/sstp check all` or `/sstp check group:NAME`."


def usage_too_many_servers(limit: int) -> str:
    return f"At most {limit} servers at once. Use `/sstp check all` or `/sstp check group:NAME`."


def usage_fleet_alone(verb: str) -> str:
    return f"`/sstp {verb}`: `all` and `group:NAME` cannot be combined with other names."


def usage_bad_group(group: str) -> str:
    return f"`{group}` is not a valid group name."


def usage_bad_server_name(name: str) -> str:
    return f"`{name}` is not a valid server name (letters, digits, `.`, `_` and `-`, at most 64)."


def usage_bad_history_limit(limit: int) -> str:
    return f"N must be a number from 1 to {limit}."


# --- help ------------------------------------------------------------------------------------
HELP_TITLE = "sstp-bot: find and fix SSTP certificate binding errors"
HELP_OPERATOR_LINES = (
    "`/sstp check SERVER...`: probe servers and report findings",
    "`/sstp check all` / `/sstp check group:NAME`: check the fleet, details in the thread",
    "`/sstp fix SERVER...`: the same as check; every report with a fixable finding carries its fix plan",
    "`/sstp history SERVER [N]`: past checks and fixes",
    "`/sstp status`: latest result per server",
    "`/sstp servers`: the inventory",
    "`/sstp help`: this list",
)
HELP_APPROVER_LINE = "You may *approve or reject* fix plans with the buttons on a report."
HELP_NOT_APPROVER_LINE = "Fix plans need an approver's click on *Approve*; you are not an approver."
HELP_TWO_PERSON = "Two-person rule: nobody approves a plan they requested themselves."
HELP_NOT_OPERATOR = "You are not allowed to run checks. Ask your VPN team to add you to the operators."
HELP_CHANNEL_NOT_ALLOWED = "Commands are not allowed in this channel."


# --- refusals --------------------------------------------------------------------------------
REFUSED_CHANNEL = "sstp-bot is not enabled in this channel."
REFUSED_NOT_OPERATOR = "You are not allowed to run checks (you are not an operator)."
REFUSED_NOT_APPROVER = "You are not an approver: the plan is unchanged."
REFUSED_OWN_REQUEST = "Two-person rule: you requested this plan, so someone else has to approve it."
REFUSED_BAD_BUTTON = "That button is not valid any more."
NOT_IN_CHANNEL = "I cannot post in this channel. Invite me first (`/invite @sstp-bot`), then try again."
INTERNAL_ERROR = "Something went wrong on our side; the details are in the bot's log."


def could_not_start(reason: str) -> str:
    return f"Approved, but the fix could not start: {escape(reason)} Run the check again when the other fix has ended."


def refused_plan_state(plan_id: int, state: str, message: str) -> str:
    reasons = {
        "EXPIRED": f"Plan #{plan_id} has expired. Run the check again for a fresh plan.",
        "SUPERSEDED": f"Plan #{plan_id} was replaced by a newer check. Use the newest report.",
        "APPROVED": f"Plan #{plan_id} was already approved.",
        "RUNNING": f"Plan #{plan_id} is already running.",
        "SUCCEEDED": f"Plan #{plan_id} has already been carried out.",
        "FAILED": f"Plan #{plan_id} has already been carried out (it failed).",
        "REJECTED": f"Plan #{plan_id} was already rejected.",
        "INTERRUPTED": f"Plan #{plan_id} was interrupted; it is never re-run automatically.",
    }
    return reasons.get(state, f"Plan #{plan_id}: {escape(message)}")


def refused_unknown_server(message: str) -> str:
    return escape(message)


STATE_CHANGED = (
    "The server changed since the plan was made, so nothing was touched. Run the check again for a fresh plan."
)


# --- progress and reports --------------------------------------------------------------------
def checking(server: str) -> str:
    return f":hourglass_flowing_sand: Checking *{escape(server)}*…"


def checking_fleet(count: int, what: str) -> str:
    return f":hourglass_flowing_sand: Checking {count} server{'s' if count != 1 else ''} ({escape(what)})…"


def check_failed(what: str, message: str) -> str:
    return f":x: The check of *{escape(what)}* could not run: {escape(message)}"


def fleet_progress(done: int, total: int) -> str:
    return f"{done} of {total} checked"


def fleet_done(total: int, healthy: int, unhealthy: int, errors: int) -> str:
    return f"{total} checked: {healthy} healthy, {unhealthy} with findings, {errors} could not be checked. Details in the thread."


STATUS_EMOJI = {"healthy": ":large_green_circle:", "unhealthy": ":red_circle:", "error": ":warning:"}
SEVERITY_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}


def report_status(server: str, status: str, findings: int, checked_at: str) -> str:
    emoji = STATUS_EMOJI.get(status, ":grey_question:")
    if status == "healthy":
        what = "healthy" if not findings else f"healthy ({findings} informational)"
    elif status == "unhealthy":
        what = f"{findings} finding{'s' if findings != 1 else ''}"
    else:
        what = "could not be checked"
    return f"{emoji} *{escape(server)}*: {what} (checked {checked_at})"


def report_error(kind: str, message: str) -> str:
    return f"*{ERROR_KINDS.get(kind, kind)}* (`{escape(kind)}`): {escape(message)}"


ERROR_KINDS = {
    "config": "Configuration problem",
    "unreachable": "Server unreachable",
    "tls": "TLS problem",
    "auth": "Authentication failed",
    "timeout": "Timed out",
    "script_failed": "A script failed on the server",
    "bad_output": "The server's answer was not understood",
}

PLAN_TITLE = "*Proposed fix*"
PLAN_DISRUPTIVE = ":warning: disruptive"


def plan_vpn_users(count: int | None) -> str:
    if count is None:
        return "Connected VPN users: unknown."
    if count == 0:
        return "No VPN users connected right now."
    return f":busts_in_silhouette: *{count}* VPN user{'s are' if count != 1 else ' is'} connected; disruptive steps will drop them."


def plan_footer(plan_id: int, expires: datetime | None) -> str:
    return f"Plan #{plan_id}" + (f", expires {local_time(expires)}" if expires else "")


def local_time(moment: datetime) -> str:
    """A time every reader sees in their own time zone (Slack's date formatting), with the UTC time
    as the fallback for clients that cannot format it."""
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{format_time(moment)}>"


APPROVE = "Approve"
REJECT = "Reject"
CONFIRM_TITLE = "Run this fix?"
CONFIRM_YES = "Run it"
CONFIRM_NO = "Cancel"


def confirm_text(server: str, steps: list[str]) -> str:
    return f"On {server}: " + "; ".join(steps)


def confirm_users(count: int | None) -> str:
    """The cost of the disruptive steps, in the confirm dialog (plain text)."""
    if count is None:
        return "Drops every connected VPN user."
    if count == 0:
        return "No VPN users are connected right now."
    return f"Drops the {count} connected VPN user{'s' if count != 1 else ''}."


def and_more(count: int) -> str:
    return f"… and {count} more not shown here."


def never_checked(server: str) -> str:
    return f":white_circle: *{server}* never checked"


def approved_by(user: str) -> str:
    return f":white_check_mark: Approved by <@{user}>"


def waiting_for(other_plan: int, server: str) -> str:
    return (
        f":hourglass_flowing_sand: Waiting for plan #{other_plan}, which another sstp-bot process is running on "
        f"*{escape(server)}*; this plan starts when it ends (then checks the server again first)."
    )


def running_step(i: int, k: int, description: str) -> str:
    return f":gear: Running step {i} of {k}: {escape(description)}"


def rejected_by(user: str) -> str:
    return f":no_entry_sign: Rejected by <@{user}>. Nothing was changed."


PLAN_STATE_LINES = {
    "EXPIRED": ":hourglass: This plan expired. Run the check again for a fresh plan.",
    "SUPERSEDED": ":arrows_counterclockwise: A newer check replaced this plan; it can no longer be approved. Use the newest report.",
    "INTERRUPTED": ":octagonal_sign: The bot stopped (or could not record the fix) while this plan was running; it will not be re-run.",
}


def superseded_from_home(server: str) -> str:
    """On the card of a plan that a check from the App Home replaced: that check proposes no plan."""
    return (
        ":arrows_counterclockwise: A newer check (from the App Home) replaced this plan; it can no longer be "
        f"approved. Run `/sstp check {escape(server)}` here for a fresh plan."
    )


def interrupted_hint(server: str) -> str:
    """Under an INTERRUPTED card: what the operator should do now."""
    return f"The server may be half-fixed: run `/sstp check {escape(server)}` before anything else."


CHECK_JOINED = "A check of this server is already under way; this card shows its result."


def too_many_checks(limit: int) -> str:
    return (
        f":hourglass: You already have {limit} checks waiting or running. "
        "Wait for one of them to finish, then try again."
    )


def server_busy(server: str) -> str:
    """A check of a server that a fix (or another operation of the bot) holds: not queued behind it."""
    return (
        f":hourglass: *{escape(server)}* is busy: a fix or another operation is running on it, so it was "
        "not probed now. A fix reports on its own card (it re-checks the server at its end); "
        "otherwise check again in a minute."
    )


BUSY = ":hourglass: The bot has as many checks waiting as it takes; try again in a minute."
REFUSED_MALFORMED_CLICK = ":no_entry: That click could not be read; nothing was done."
REFUSED_NOT_THE_CARD = (
    ":no_entry: That button is not on this plan's card; nothing was done. Use the plan's own card."
)


def fix_result(state: str, error: str | None, *, drifted: bool = False, remaining: int = 0) -> str:
    """The headline of a finished fix. SUCCEEDED means the plan's findings are gone; `remaining` counts
    the findings the re-check still reports that no plan can fix (a certificate to renew, say)."""
    if state == "SUCCEEDED":
        if remaining:
            return (
                ":white_check_mark: *Fix applied.* The re-check still reports "
                f"{remaining} finding{'s that need' if remaining != 1 else ' that needs'} a person (below)."
            )
        return ":white_check_mark: *Fix applied.*"
    if drifted:
        return f":x: *Nothing done.* {STATE_CHANGED}"
    if state == "INTERRUPTED":
        return PLAN_STATE_LINES["INTERRUPTED"] + (f" {escape(error)}" if error else "")
    return ":x: *Fix failed.*" + (f" {escape(error)}" if error else "")


def step_result_line(ok: bool, changed: bool, action: str, detail: str) -> str:
    mark = ":white_check_mark:" if ok else ":x:"
    note = "changed" if changed else "no change"
    return f"{mark} `{escape(action)}` ({note}) {escape(detail)}"


RECHECK_TITLE = "*Re-check*"
NO_RECHECK = "No re-check was possible."
EVIDENCE_IN_THREAD = "_(full evidence in the thread)_"
TRUNCATED = "…"


def more_in_thread(count: int) -> str:
    return f"_…and {count} more in the thread._"


def thread_cut(server: str, count: int) -> str:
    return (f"_{count} more message(s) of findings and evidence are not posted here. Everything is in "
            f"`sstp-bot check {escape(server)}` and in the check's history._")


def evidence_reply(server: str, title: str) -> str:
    return f"Evidence for *{escape(title)}* on *{escape(server)}*:"


# --- history, status, servers ----------------------------------------------------------------
NO_HISTORY = "No history yet."
NO_STATUS = "No server has been checked yet."
NO_SERVERS = "The inventory is empty."


def history_title(server: str) -> str:
    return f"History of {server}"


STATUS_TITLE = "Latest result per server"
SERVERS_TITLE = "Inventory"


# --- health ----------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Escape the three characters Slack treats as markup in text coming from outside."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
