"""The bot's own version, as installed (the JEA module must carry the same one, DESIGN 12)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def bot_version() -> str | None:
    """The installed `sstp-bot` distribution's version, or None when it is not installed."""
    try:
        return version("sstp-bot")
    except PackageNotFoundError:
        return None
