"""The `/sstp` command grammar: text in, a typed command out, or a UsageError. Pure.

Strict on purpose: the text comes from anyone in the workspace and names end up as inventory
look-ups, so anything that is not a plain server name (mentions, links, control characters, absurd
lengths) is refused before anything runs.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from bot.slack import messages
from commands.errors import UsageError
from commands.server import SERVER_NAME_RE

MAX_TEXT_LENGTH = 4000
MAX_SERVERS = 50
MAX_HISTORY = 100
DEFAULT_HISTORY = 10


@dataclass(frozen=True)
class Check:
    """`check SERVER...`, `check all`, `check group:NAME`, or `fix SERVER` (verb "fix")."""

    servers: tuple[str, ...] = ()
    all_servers: bool = False
    group: str | None = None
    verb: str = "check"

    @property
    def fleet(self) -> bool:
        """More than one server may be checked: one summary message, details in its thread."""
        return self.all_servers or self.group is not None or len(self.servers) > 1


@dataclass(frozen=True)
class History:
    server: str
    limit: int = DEFAULT_HISTORY


@dataclass(frozen=True)
class Servers:
    pass


@dataclass(frozen=True)
class Status:
    pass


@dataclass(frozen=True)
class Help:
    pass


Command = Check | History | Servers | Status | Help


# A typed host name that Slack turned into a link: `<http://vpn01.example.com|vpn01.example.com>`.
# Only the exact shape Slack produces (the label is the link's host, nothing else) is unwrapped.
_AUTOLINKED_NAME = re.compile(r"<https?://([A-Za-z0-9.-]{1,253})/?\|([A-Za-z0-9.-]{1,253})>")


def _unwrap_name(match: re.Match[str]) -> str:
    host, label = match.group(1), match.group(2)
    return label if host.lower() == label.lower() else match.group(0)


def parse(text: str | None) -> Command:
    """Parse the text after `/sstp`. Raises UsageError with a short, safe message."""
    raw = text or ""
    if len(raw) > MAX_TEXT_LENGTH:
        raise UsageError(messages.USAGE_TOO_LONG)
    raw = _AUTOLINKED_NAME.sub(_unwrap_name, raw)
    if "<" in raw or ">" in raw:
        # Slack sends mentions and links as <@U123>, <#C1|name>, <https://...|label>.
        raise UsageError(messages.USAGE_MARKUP)
    for char in raw:
        if char != " " and unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            raise UsageError(messages.USAGE_CONTROL)
    words = raw.split()
    if not words:
        return Help()
    verb, args = words[0].lower(), words[1:]
    if verb in ("check", "fix"):
        return _parse_check(verb, args)
    if verb == "history":
        return _parse_history(args)
    if verb in ("servers", "status", "help"):
        if args:
            raise UsageError(messages.usage_no_arguments(verb))
        simple: dict[str, Command] = {"servers": Servers(), "status": Status(), "help": Help()}
        return simple[verb]
    raise UsageError(messages.usage_unknown_verb(_shown(verb)))


def _parse_check(verb: str, args: list[str]) -> Check:
    if not args:
        raise UsageError(messages.usage_check_needs_target(verb))
    if len(args) > MAX_SERVERS:
        raise UsageError(messages.usage_too_many_servers(MAX_SERVERS))
    lowered = [a.lower() for a in args]
    if "all" in lowered or any(a.startswith("group:") for a in lowered):
        if len(args) != 1:
            raise UsageError(messages.usage_fleet_alone(verb))
        if lowered[0] == "all":
            return Check(all_servers=True, verb=verb)
        group = args[0][len("group:") :]
        if not SERVER_NAME_RE.match(group):
            raise UsageError(messages.usage_bad_group(_shown(group)))
        return Check(group=group, verb=verb)
    names: list[str] = []
    seen: set[str] = set()
    for name in args:
        if not SERVER_NAME_RE.match(name):
            raise UsageError(messages.usage_bad_server_name(_shown(name)))
        if name.lower() not in seen:
            seen.add(name.lower())
            names.append(name)
    # `fix` is an alias of `check` (DESIGN 8): every report with a fixable finding carries its plan and
    # the Approve/Reject buttons, for one server, several, a group or all.
    return Check(servers=tuple(names), verb=verb)


def _parse_history(args: list[str]) -> History:
    if not args or len(args) > 2:
        raise UsageError(messages.USAGE_HISTORY)
    server = args[0]
    if not SERVER_NAME_RE.match(server):
        raise UsageError(messages.usage_bad_server_name(_shown(server)))
    if len(args) == 1:
        return History(server=server)
    if not re.fullmatch(r"[0-9]{1,3}", args[1]) or not 1 <= int(args[1]) <= MAX_HISTORY:
        raise UsageError(messages.usage_bad_history_limit(MAX_HISTORY))
    return History(server=server, limit=int(args[1]))


def _shown(word: str) -> str:
    """A user-typed word safe to echo back: short, and without Slack formatting characters."""
    cleaned = re.sub(r"[^A-Za-z0-9._:-]", "?", word)
    return cleaned if len(cleaned) <= 40 else cleaned[:40] + "…"
