"""Scheduled sweep alerts and the weekly expiry digest in `[schedule] alert_channel` (DESIGN 8, 13).

Only changes are posted: a server that became unhealthy gets the full check report with its plan and
Approve/Reject buttons (the same card as `/sstp check`, so approvals work the same way); a recovered
one a short line; one that could not be checked a short line with the reason. A server's first
recorded check is posted only when it is not healthy. A server that stays unhealthy gets no new
message: its alert card is moved to the plan of the newest sweep, so its buttons keep working.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from bot.operations import CertificateForecast, Change, Forecast, PeriodicJobs, SweepReport
from bot.slack import blocks, messages
from bot.slack.blocks import SlackMessage
from bot.slack.cards import Cards, api_error
from commands.errors import ConfigError, SstpBotError
from commands.model import as_utc

if TYPE_CHECKING:  # `serve`'s tests replace bot.service with a stand-in
    from bot.service import CheckOutcome, Service

logger = logging.getLogger(__name__)

#: Plans whose alert card may be moved to a newer plan: nobody decided them.
_UNDECIDED = {"PROPOSED", "SUPERSEDED", "EXPIRED"}


def recovered_line(change: Change) -> str:
    resolved = f" (resolved: {', '.join(change.resolved)})" if change.resolved else ""
    return f":large_green_circle: *{messages.escape(change.server)}* recovered: healthy again{resolved}."


def error_line(server: str, kind: str | None, message: str | None) -> str:
    reason = messages.escape(f"{kind or 'error'}: {message or ''}".strip().rstrip(":"))
    return f":warning: *{messages.escape(server)}* could not be checked by the scheduled sweep ({reason[:500]})."


def expiry_lines(certificates: Sequence[CertificateForecast]) -> list[str]:
    """One line per certificate within its server's `cert_expiry_warning_days`, soonest first."""
    lines = []
    for cert in certificates:
        if cert.days_left > cert.warning_days:
            continue
        when = f"expired {-cert.days_left} day(s) ago" if cert.days_left < 0 else f"{cert.days_left} day(s) left"
        renewal = " - a renewal is in the store, not bound yet" if cert.renewal_in_store else ""
        lines.append(f"• *{messages.escape(cert.server)}*: expires {cert.not_after:%Y-%m-%d} ({when}){renewal}")
    return lines


class SweepAlerts:
    """Posts what scheduled sweeps found and the weekly digest, in one channel."""

    def __init__(self, client: WebClient, service: Service, channel: str) -> None:
        self.client = client
        self.service = service
        self.channel = channel
        self.cards = Cards(client)

    # --- sweeps ----------------------------------------------------------------------------------
    def publish_sweep(self, report: SweepReport) -> None:
        """Post each change of a sweep (never raises: a Slack outage must not stop the schedule)."""
        changes = {c.server: c for c in report.changes}
        for outcome in report.outcomes:
            try:
                change = changes.get(outcome.result.server)
                if change is None:
                    carried = self._carry_card(outcome, report)
                    self.cards.retire(outcome, keep=carried)
                else:
                    self._post_change(change, outcome)
                    self.cards.retire(outcome)
            except Exception:
                logger.exception("could not post the sweep result of %s", outcome.result.server)

    def _post_change(self, change: Change, outcome: CheckOutcome) -> None:
        result = outcome.result
        if change.after == "healthy":
            if change.before is not None:
                self._post(blocks.notice(recovered_line(change)))
        elif change.after == "error":
            self._post(blocks.notice(error_line(result.server, result.error_kind, result.error_message)))
        else:
            ts = self._post(self._report(outcome))
            if ts is not None and outcome.plan_id is not None:
                self.service.attach_message(outcome.plan_id, self.channel, ts)

    def _carry_card(self, outcome: CheckOutcome, report: SweepReport) -> tuple[str, str] | None:
        """Nothing changed: move the server's alert card (if any) to this sweep's plan, unposted.
        Returns the card (channel, ts) when it now shows the new plan."""
        previous = report.previous.get(outcome.result.server)
        if outcome.plan_id is None or previous is None or previous.plan_id is None:
            return None
        try:
            old = self.service.get_plan(previous.plan_id)
        except SstpBotError:
            return None
        if old.channel != self.channel or not old.message_ts or old.state not in _UNDECIDED:
            return None
        if not self.cards.update(self.channel, old.message_ts, self._report(outcome)):
            return None
        self.service.attach_message(outcome.plan_id, self.channel, old.message_ts)
        return self.channel, old.message_ts

    def _report(self, outcome: CheckOutcome) -> SlackMessage:
        expires_at = None
        if outcome.plan_id is not None:
            try:
                expires_at = self.service.get_plan(outcome.plan_id).expires_at
            except SstpBotError:
                expires_at = None
        plan_id = outcome.plan_id if outcome.result.plan is not None else None
        return blocks.report(outcome.result, plan_id, expires_at)

    def _post(self, message: SlackMessage) -> str | None:
        return self.cards.post_quietly(self.channel, message)

    # --- the weekly digest -------------------------------------------------------------------------
    def publish_digest(self, result: Forecast, now: datetime | None = None) -> None:
        """Upload the expiry chart (files v2) with the certificates expiring within their warning days."""
        now = as_utc(now or self.service.clock())
        lines = expiry_lines(result.certificates)
        head = (f"*Weekly SSTP certificate digest*: {len(lines)} certificate(s) expire within the warning period."
                if lines else "*Weekly SSTP certificate digest*: no certificate expires within the warning period.")
        if result.unknown:
            lines.append(f"_No certificate known for: {messages.escape(', '.join(result.unknown[:50]))}_")
        text = "\n".join([head, *lines])[:3900]
        try:
            from bot.chart import expiry_chart

            chart = expiry_chart(result.certificates, now)
        except ConfigError as exc:  # matplotlib not installed: the list still goes out
            logger.warning("digest without its chart: %s", exc)
            self._post(blocks.notice(text[:2900]))
            return
        try:
            self.client.files_upload_v2(
                channel=self.channel,
                content=chart,
                filename=f"sstp-certificate-expiry-{now:%Y-%m-%d}.png",
                title=f"SSTP certificate expiry, {now:%Y-%m-%d}",
                initial_comment=text,
            )
        except (SlackApiError, SlackRequestError, OSError) as exc:
            logger.warning("digest: files_upload_v2 failed: %s", api_error(exc))


def start_schedule(client: WebClient, service: Service, stop: threading.Event,
                   poll_seconds: float = 15.0) -> PeriodicJobs | None:
    """Start `serve`'s scheduled sweeps and digest (DESIGN 13) in a thread; None when not configured."""
    schedule = service.config.schedule
    if schedule.sweep_every_minutes <= 0 and not schedule.alert_channel:
        return None
    alerts = SweepAlerts(client, service, schedule.alert_channel) if schedule.alert_channel else None
    jobs = PeriodicJobs(service, on_sweep=sweep_publisher(client, alerts),
                        on_digest=alerts.publish_digest if alerts else None)
    jobs.start(stop, poll_seconds)
    return jobs


def sweep_publisher(client: WebClient, alerts: SweepAlerts | None) -> Callable[[SweepReport], None]:
    """What `serve` does after each scheduled sweep: post its changes in the alert channel, if there
    is one. Without one nothing is posted, but the cards the sweep's checks superseded (a `/sstp
    check` card, say) still lose their buttons, as after any other check (DESIGN 6)."""
    if alerts is not None:
        return alerts.publish_sweep
    cards = Cards(client)

    def retire(report: SweepReport) -> None:
        for outcome in report.outcomes:
            cards.retire(outcome)

    return retire
