"""`sstp-bot forecast [--json] [--png FILE] [--days N]`: every server's SSTP certificate expiry.

Read from the latest check of each server that could read it (no server is contacted); `--png`
draws the fleet's expiry timeline with matplotlib (the optional `chart` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from bot.cli import Environment, ExitStatus, open_service
from bot.cli.sweep import wrap
from bot.config import load_config
from bot.operations import Forecast, forecast
from commands.errors import ConfigError, UsageError, visible
from commands.files import write_file


def run(args: argparse.Namespace, env: Environment) -> int:
    if args.days is not None and args.days < 0:
        raise UsageError("forecast: --days must be 0 or more")
    png = Path(args.png) if args.png else None
    if png is not None and not png.parent.is_dir():
        raise ConfigError(f"forecast --png: the folder {str(png.parent)!r} does not exist")
    with contextlib.ExitStack() as cleanup:
        config = load_config(args.config, env.environ)
        service = open_service(config, env)
        cleanup.callback(service.close)
        now = env.clock()
        result = forecast(service, now, args.days)
        if png is not None:
            from bot.chart import expiry_chart  # matplotlib is optional and slow to import

            write_file(png, expiry_chart(result.certificates, now))
        if args.json:
            print(json.dumps([c.to_json() for c in result.certificates], indent=2), file=env.stdout)
        else:
            print(visible(render_text(result, args.days, env.width)), file=env.stdout)
            if png is not None:
                print(f"chart written to {png}", file=env.stdout)
    return ExitStatus.OK


def render_text(result: Forecast, days: int | None, width: int = 80) -> str:
    """Per certificate: server, expiry and days left; then its thumbprint (never split) and subject."""
    lines = []
    for cert in result.certificates:
        left = f"expired {-cert.days_left} day(s) ago" if cert.days_left < 0 else f"{cert.days_left} day(s) left"
        renewal = "  renewal in store" if cert.renewal_in_store else ""
        lines.append(f"{cert.server}  {cert.not_after:%Y-%m-%d}  {left}{renewal}")
        lines.append(f"  {cert.thumbprint}")
        lines.append(f"  {cert.subject}")
    if not result.certificates:
        lines.append(f"No certificate expires within {days} day(s)." if days is not None else "No certificate known.")
    if result.unknown:
        lines.append("No SSTP certificate known (never checked, or not in the store): " + ", ".join(result.unknown))
    return "\n".join(part for line in lines for part in wrap(line, width))
