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


# Every secret pattern above needs one of these words (case-insensitive): `xox`, `xapp`,
# `authorization`, `passw` (password, passwd), `pwd`, `secret`, `token`, `credential`. Most strings
# hold none of them (a snapshot is hashes, names and base64 certificates), so one cheap look for
# the words lets them skip the five regexes; a string that has one goes through all five, as before.
_SECRET_WORDS = ("xox", "xapp", "authorization", "passw", "pwd", "secret", "token", "credential")
# Secret-named keys, as `_secret_key` decided them. Keys repeat (the same snapshot fields on every
# check); the cache is bounded because keys can also come from a server's data.
_KEY_VERDICTS: dict[str, bool] = {}
_KEY_VERDICTS_MAX = 4096


def _scrub(text: str) -> str:
    """The five secret patterns, in order (the slow, complete path)."""
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def redact_text(text: str) -> str:
    """Replace anything shaped like a token or `password=...` in a string; control characters (escape
    sequences from a server's text) are stripped, so nothing stored can drive a terminal later."""
    if not (text.isascii() and text.isprintable()):
        text = strip_control(text)
        if not text.isascii():
            # `(?i)` folds some non-ASCII letters onto ASCII ones (U+017F long s matches `s`, U+212A
            # Kelvin sign matches `k`): `str.lower` below would not see those, the regexes would.
            return _scrub(text)
    # ASCII without control characters now. Its lower-case form holds a secret word exactly when the
    # case-insensitive patterns could find one; without any, none of the patterns can match, and a
    # replacement ("[REDACTED]" plus text that was there) cannot create a word either.
    lowered = text.lower()
    for word in _SECRET_WORDS:
        if word in lowered:
            return _scrub(text)
    return text


def _secret_key(key: str) -> bool:
    verdict = _KEY_VERDICTS.get(key)
    if verdict is None:
        verdict = key not in _HARMLESS_KEYS and _SECRET_KEY_RE.search(key) is not None
        if len(_KEY_VERDICTS) < _KEY_VERDICTS_MAX:
            _KEY_VERDICTS[key] = verdict
    return verdict


def redact(value: Any) -> Any:
    """Recursively scrub a JSON-like value: secret-named keys lose their value, strings are scanned."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and _secret_key(key) and item not in (None, "", False):
                out[key] = REDACTED
            elif isinstance(item, str):
                out[key] = redact_text(item)
            elif isinstance(item, dict | list | tuple):
                out[key] = redact(item)
            else:  # numbers, booleans, None: nothing to scrub
                out[key] = item
        return out
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


# What redaction acts on, as it shows in JSON text (`json.dumps(..., ensure_ascii=False)`): the secret
# words of strings, the words of secret-named keys (`_SECRET_KEY_RE`), and the control characters
# `strip_control` removes, which JSON writes as `\b`, `\f`, `\r`, `\u00XX` or (DEL) as it is.
_ANY_WORDS = (*_SECRET_WORDS, "api", "cookie")  # "api": apikey, api_key and api-key in one scan
_JSON_CONTROL = ("\\u00", "\\b", "\\f", "\\r")


def could_need_redaction(json_text: str) -> bool:
    """False only if `redact` leaves every key and string of the value serialised as `json_text` as it is.

    For the quick path of snapshot encoding (`storage.snapshots.encode_redacted_snapshot`): one look
    at the whole JSON text instead of a walk of the value. Non-ASCII text always answers True (see
    `redact_text` on case folding), and so does anything merely resembling a secret or a control
    character (an escaped backslash before `b`): the full redaction then decides.
    """
    if not json_text.isascii() or "\x7f" in json_text:
        return True
    # Each escape starts with a backslash, which most snapshots do not hold at all: one scan for it.
    if "\\" in json_text and any(escape in json_text for escape in _JSON_CONTROL):
        return True
    lowered = json_text.lower()
    return any(word in lowered for word in _ANY_WORDS)


def redact_optional(text: str | None) -> str | None:
    return None if text is None else redact_text(text)
