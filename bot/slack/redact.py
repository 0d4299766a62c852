"""A logging filter that keeps Slack tokens out of every log line, whatever logged them."""

from __future__ import annotations

import logging
import re

TOKEN_RE = re.compile(r"\b(xox[a-z]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+)")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    return TOKEN_RE.sub(lambda m: m.group(0)[:5] + REDACTED, text)


class RedactTokens(logging.Filter):
    """Rewrites the record's message with tokens redacted (args are merged first)."""

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
    handler.addFilter(RedactTokens())
