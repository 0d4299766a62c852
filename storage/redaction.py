"""Defensive scrubbing: nothing that looks like a secret is ever written to the database.

The repository is never handed a secret on purpose; this catches the accidents (a Slack token echoed
in an error message, a `password` key in some details dict).
"""

from __future__ import annotations

import re
from typing import Any

from commands.errors import strip_control

REDACTED = "[REDACTED]"

# Slack tokens (bot, user, app-level, legacy, refresh, config) and HTTP credentials in text.
_SECRET_PATTERNS = (
    re.compile(r"\bxox[abpsore]-[A-Za-z0-9][A-Za-z0-9-]*"),
    re.compile(r"\bxapp-[A-Za-z0-9][A-Za-z0-9-]*"),
    re.compile(r"(?i)\b(authorization\s*[:=]\s*)(?:basic|bearer|negotiate|ntlm)?\s*[A-Za-z0-9+/=._-]{8,}"),
    # `password=x`, `password: x`, and the quoted keys of JSON and Python reprs (`"password": "x"`).
    re.compile(r"(?i)\b((?:password|passwd|pwd|secret|token)[\"']?\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|\S+)"),
    # PowerShell parameters: -Password 'x', -AsPlainText -Secret x
    re.compile(r"(?i)(-(?:password|secret|token|credential)\s+)(\"[^\"]*\"|'[^']*'|[^\s-]\S*)"),
)
# Keys whose values are never stored, whatever they look like.
_SECRET_KEY_RE = re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key|authorization|cookie|credential)")
# ... except these, which merely mention the word and hold no secret.
_HARMLESS_KEYS = frozenset({"message_ts", "token_kind"})


def redact_text(text: str) -> str:
    """Replace anything shaped like a token or `password=...` in a string; control characters (escape
    sequences from a server's text) are stripped, so nothing stored can drive a terminal later."""
    text = strip_control(text)
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def redact(value: Any) -> Any:
    """Recursively scrub a JSON-like value: secret-named keys lose their value, strings are scanned."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if (
                isinstance(key, str)
                and key not in _HARMLESS_KEYS
                and _SECRET_KEY_RE.search(key)
                and item not in (None, "", False)
            ):
                out[key] = REDACTED
            else:
                out[key] = redact(item)
        return out
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def redact_optional(text: str | None) -> str | None:
    return None if text is None else redact_text(text)
