"""The fleet's certificate expiry timeline as a PNG (matplotlib, Agg backend: no display needed).

Used by `sstp-bot forecast --png` and the weekly digest (DESIGN 13). matplotlib is the optional
`chart` extra; importing this module without it raises a ConfigError that says what to install.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.operations import CertificateForecast
from commands.errors import ConfigError
from commands.model import as_utc

#: More rows than this would make an unreadable chart: the soonest are drawn, the rest counted.
MAX_ROWS = 60
EXPIRED, SOON, LATER, OK = "#c62828", "#ef6c00", "#f9a825", "#2e7d32"


def _colour(cert: CertificateForecast) -> str:
    if cert.days_left < 0:
        return EXPIRED
    if cert.days_left <= cert.warning_days:
        return SOON
    if cert.days_left <= 2 * cert.warning_days:
        return LATER
    return OK


def expiry_chart(certificates: Sequence[CertificateForecast], now: datetime) -> bytes:
    """A horizontal timeline: one bar per server from today to its certificate's expiry, soonest on top."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        raise ConfigError("drawing the chart needs matplotlib: pip install 'sstp-bot[chart]'") from None

    now = as_utc(now)
    shown = list(certificates)[:MAX_ROWS]
    hidden = len(certificates) - len(shown)
    height = max(2.8, 0.42 * len(shown) + 1.8)
    fig, ax = plt.subplots(figsize=(11, height), dpi=110)
    try:
        today = mdates.date2num(now)
        labels = []
        for row, cert in enumerate(shown):
            end = mdates.date2num(as_utc(cert.not_after))
            colour = _colour(cert)
            start, width = (end, today - end) if end < today else (today, end - today)
            ax.barh(row, width, left=start, height=0.6, color=colour, alpha=0.85)
            # A marker at the expiry keeps a certificate that expires today (a zero-length bar) visible.
            ax.plot([end], [row], marker="D", color=colour, markersize=6, markeredgecolor="black", markeredgewidth=0.5)
            when = "expired" if cert.days_left < 0 else "left"
            text = f"   {cert.not_after:%Y-%m-%d} ({abs(cert.days_left)} d {when})"
            if cert.renewal_in_store:
                text += "  renewal in store, not bound"
            ax.text(max(end, today), row, text, va="center", ha="left", fontsize=8.5)
            labels.append(cert.server)
        ax.set_yticks(range(len(shown)), labels=labels, fontsize=9)
        ax.invert_yaxis()  # soonest on top
        warning = max((c.warning_days for c in shown), default=30)
        ax.axvline(today, color="black", linewidth=1.2)
        ax.text(today, -0.75, "today ", fontsize=8, va="bottom", ha="right")
        ax.axvline(mdates.date2num(now + timedelta(days=warning)), color=SOON, linestyle="--", linewidth=1)
        ax.text(mdates.date2num(now + timedelta(days=warning)), -0.75, f" {warning} days", fontsize=8,
                va="bottom", color=SOON)
        ends = [mdates.date2num(as_utc(c.not_after)) for c in shown] or [today + 30]
        left, right = min([today, *ends]), max([today + warning, *ends])
        span = max(right - left, 30.0)
        # Room on the right for the date labels.
        ax.set_xlim(left - span * 0.05, right + span * 0.35)
        ax.set_ylim(len(shown) - 0.4 if shown else 0.6, -1.2)
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=4, maxticks=8))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        ax.tick_params(axis="x", labelsize=8.5)
        ax.grid(axis="x", alpha=0.3)
        title = f"SSTP certificate expiry, {len(certificates)} server(s), as of {now:%Y-%m-%d %H:%M} UTC"
        if hidden:
            title += f" (soonest {len(shown)} shown, {hidden} more)"
        ax.set_title(title, fontsize=11, loc="left")
        if not shown:
            ax.text(today, 0, "  no certificate known", va="center")
        ax.legend(
            handles=[Patch(color=EXPIRED, label="expired"), Patch(color=SOON, label=f"within {warning} days"),
                     Patch(color=LATER, label=f"within {2 * warning} days"), Patch(color=OK, label="later")],
            loc="upper center", bbox_to_anchor=(0.5, -0.06 if len(shown) > 8 else -0.12), ncol=4, fontsize=8.5,
            frameon=False,
        )
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)
