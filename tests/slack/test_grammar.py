from __future__ import annotations

import pytest

from bot.slack.grammar import Check, Help, History, Servers, Status, parse
from commands.errors import UsageError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Help()),
        (None, Help()),
        ("   ", Help()),
        ("help", Help()),
        ("HELP", Help()),
        ("servers", Servers()),
        ("status", Status()),
        ("check vpn01", Check(servers=("vpn01",))),
        ("check   vpn01   vpn02 ", Check(servers=("vpn01", "vpn02"))),
        ("check vpn01 VPN01 vpn01", Check(servers=("vpn01",))),
        ("Check all", Check(all_servers=True)),
        ("check ALL", Check(all_servers=True)),
        ("check group:emea", Check(group="emea")),
        ("fix vpn01", Check(servers=("vpn01",), verb="fix")),
        ("check vpn-01.corp_x", Check(servers=("vpn-01.corp_x",))),
        ("history vpn01", History("vpn01", 10)),
        ("history vpn01 5", History("vpn01", 5)),
        ("history vpn01 100", History("vpn01", 100)),
    ],
)
def test_good_commands(text: str | None, expected: object) -> None:
    assert parse(text) == expected


def test_fleet_property() -> None:
    assert not parse("check vpn01").fleet  # type: ignore[union-attr]
    assert parse("check vpn01 vpn02").fleet  # type: ignore[union-attr]
    assert parse("check all").fleet  # type: ignore[union-attr]
    assert parse("check group:emea").fleet  # type: ignore[union-attr]


def test_fix_is_an_alias_of_check_for_every_target() -> None:
    assert parse("fix vpn01 vpn02") == Check(servers=("vpn01", "vpn02"), verb="fix")
    assert parse("fix all") == Check(all_servers=True, verb="fix")
    assert parse("FIX group:emea") == Check(group="emea", verb="fix")


@pytest.mark.parametrize(
    "text",
    [
        "check",
        "fix",
        "fix all vpn01",
        "check all vpn01",
        "check group:emea vpn01",
        "check group:",
        "check group:em/ea",
        "check vpn01;rm",
        "check vpn01$(whoami)",
        "check ../../etc/passwd",
        "check " + "a" * 65,
        "check " + " ".join(f"s{i}" for i in range(51)),
        "history",
        "history vpn01 0",
        "history vpn01 101",
        "history vpn01 -1",
        "history vpn01 five",
        "history vpn01 5 6",
        "servers extra",
        "status now",
        "help me",
        "reboot vpn01",
        "check <@U0123ABCD>",
        "check <#C0123|vpn-ops>",
        "check <https://evil.example|vpn01>",
        "check <!channel>",
        "check vpn01\x00",
        "check vpn01\nstatus",
        "check\tvpn01",
        "check vpn01\u202e",
        "check vpn01\u200b",
        "check vpn01\x1b[2J",
        "x" * 10_000,
        "check " + "vpn01 " * 2000,
        "check vрn01",  # Cyrillic "р"
        "check vpn01 &amp;",
    ],
)
def test_bad_commands_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(text)
    message = str(info.value)
    assert 0 < len(message) <= 200
    assert "<" not in message and ">" not in message  # never echoes markup back


def test_exactly_fifty_names_is_fine() -> None:
    command = parse("check " + " ".join(f"s{i}" for i in range(50)))
    assert isinstance(command, Check) and len(command.servers) == 50


def test_echoed_words_are_sanitised_and_short() -> None:
    with pytest.raises(UsageError) as info:
        parse("frobnicate*" + "y" * 200)
    assert "*" not in str(info.value) and len(str(info.value)) < 120
