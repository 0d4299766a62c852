"""A logging filter that keeps secrets out of every log line, whatever logged them.

The patterns are the database's (`storage.redaction`): Slack tokens, `password=...`, Authorization
headers, PowerShell `-Password` arguments. One list, so logs and the database scrub the same things.
"""

from __future__ import annotations

import logging

from storage.redaction import REDACTED, redact_text

__all__ = ["REDACTED", "RedactSecrets", "install", "redact"]


def redact(text: str) -> str:
    return redact_text(text)


class RedactSecrets(logging.Filter):
    """Rewrites the record's message with secrets redacted (args are merged first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install(handler: logging.Handler) -> None:
    handler.addFilter(RedactSecrets())
