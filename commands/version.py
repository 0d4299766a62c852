"""The bot's own version, as installed (the JEA module must carry the same one, DESIGN 12)."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version


def bot_version() -> str | None:
    """The installed `sstp-bot` distribution's version, or None when it is not installed."""
    try:
        return version("sstp-bot")
    except PackageNotFoundError:
        return None


def module_version(release: str) -> str:
    """The PowerShell `ModuleVersion` for a bot version: a System.Version takes 2 to 4 numbers, so a
    Python pre- or post-release suffix is dropped (`1.2.0rc1` -> `1.2.0`). ValueError without numbers."""
    match = re.match(r"^\s*v?(\d+(?:\.\d+){0,3})", release)
    if not match:
        raise ValueError(f"the version {release!r} has no numeric release part for ModuleVersion")
    parts = match.group(1).split(".")
    return ".".join(parts + ["0"] * (2 - len(parts)))


def is_bot_module(reported: str | None, expected: str | None = None) -> bool:
    """Whether a JEA module version (as the probe reports it) is the one exported by this bot version
    (`expected`, default: the installed one). One rule for the finding and for the fix guard."""
    wanted = expected if expected is not None else bot_version()
    if not reported or not reported.strip() or wanted is None:
        return False
    try:
        return _version_key(reported) == _version_key(module_version(wanted))
    except ValueError:
        return False


def _version_key(release: str) -> tuple[int, ...]:
    # System.Version compares 0.1 and 0.1.0 as different; for "is it the bot's version" they are one.
    numbers = [int(part) for part in re.findall(r"\d+", release)[:4]]
    while numbers and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)
