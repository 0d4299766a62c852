"""The one error hierarchy of sstp-bot.

Every layer raises these; `bot.cli` maps them to exit codes and `bot.slack` to Slack text, each in
one place. Messages are written for a Windows/VPN admin and never contain a secret.
"""

from __future__ import annotations

import re
from typing import Literal

RemoteErrorKind = Literal[
    "unreachable", "tls", "auth", "timeout", "script_failed", "bad_output"
]


class SstpBotError(Exception):
    """Base class: a problem we can explain to the user."""


class ConfigError(SstpBotError):
    """The configuration file or environment is wrong (error kind `config`)."""


class UnknownServer(ConfigError):
    """A server name that is not in the inventory. The bot never connects to it."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        self.known = sorted(known or [])
        hint = f" Known servers: {', '.join(self.known)}." if self.known else ""
        super().__init__(f"Unknown server {name!r}: it is not in the inventory.{hint}")


class UsageError(SstpBotError):
    """A malformed command (CLI exit 3, ephemeral usage text in Slack)."""


#: What a terminal acts on instead of showing: C0 controls but tab and newline, DEL, C1 (0x9B is a CSI
#: on its own), and the Unicode controls that reorder or split a line (bidi marks and overrides).
TERMINAL_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def visible(text: str) -> str:
    """`text` as a terminal shows it inertly: every character a terminal would act on
    (`TERMINAL_CONTROL`) becomes U+FFFD. Text from a server (site names, certificate subjects, error
    records) must not clear the screen, rewrite lines, retitle the window, add a link or hide what
    follows. The length is kept, so a styled rich `Text`'s spans still fit."""
    return TERMINAL_CONTROL.sub("\ufffd", text)


def strip_control(text: str) -> str:
    """Text from a server without control characters (tabs and newlines kept): an HTTP 500 body with
    escape sequences must not drive the operator's terminal, now or when `history` replays it."""
    return TERMINAL_CONTROL.sub("", text)


class RemoteError(SstpBotError):
    """A check or fix could not be carried out on the server. The message may quote the server, so
    its control characters are stripped here, once, for the terminal, Slack, logs and the database."""

    def __init__(self, kind: RemoteErrorKind, server: str, message: str) -> None:
        message = strip_control(message)
        self.kind: RemoteErrorKind = kind
        self.server = server
        self.message = message
        super().__init__(f"{server}: {message}")


class SnapshotError(SstpBotError):
    """The probe output is not a valid snapshot v1 (error kind `bad_output`)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"invalid snapshot: {field}: {message}" if field else f"invalid snapshot: {message}")


class NotAuthorised(SstpBotError):
    """The actor may not do this (not an approver, own request under the two-person rule, ...)."""


class PlanStateError(SstpBotError):
    """A plan is not in the state the action needs (already approved, expired, superseded, ...)."""

    def __init__(self, plan_id: int, state: str, message: str) -> None:
        self.plan_id = plan_id
        self.state = state
        super().__init__(message)
