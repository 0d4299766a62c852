"""A logging filter that keeps secrets out of every log line, whatever logged them.

The patterns are the database's (`storage.redaction`): Slack tokens, `password=...`, Authorization
headers, PowerShell `-Password` arguments. One list, so logs and the database scrub the same things.
"""

from __future__ import annotations

import logging
import re

from storage.redaction import REDACTED, redact_text

__all__ = ["REDACTED", "RedactSecrets", "install", "one_line", "redact"]


def redact(text: str) -> str:
    return redact_text(text)


def one_line(text: str) -> str:
    """Control characters escaped (`\\n`, `\\x1b`): text from a request or a server can neither start
    a forged log line nor send escape sequences to the operator's terminal (issue 14, items 3 and 9)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class RedactSecrets(logging.Filter):
    """Rewrites the record's message with secrets redacted (args are merged first) and control
    characters escaped, so every record is one line whatever it quotes. Tracebacks keep their lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        cleaned = one_line(redact(message))
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install(handler: logging.Handler) -> None:
    handler.addFilter(RedactSecrets())
