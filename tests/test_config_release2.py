"""The configuration keys of the second release (DESIGN 7 [2]): defaults, inheritance, refusals."""

from __future__ import annotations

import pytest

from bot.config import parse_config
from commands.errors import ConfigError


def _config(**sections: object) -> dict[str, object]:
    base: dict[str, object] = {"servers": {"vpn01": {"host": "vpn01.corp.example.com"}}}
    base.update(sections)
    return base


def test_defaults_of_the_second_release() -> None:
    config = parse_config(_config())
    server = config.server("vpn01")
    assert server.configuration_name == "Microsoft.PowerShell"
    assert server.client_view is True
    assert server.client_endpoint is None
    assert server.keep_alive_minutes == 0
    assert server.restart_timeout_seconds == 300
    assert config.schedule.sweep_every_minutes == 0
    assert config.schedule.alert_channel == ""
    assert (config.schedule.digest_weekday, config.schedule.digest_hour_utc) == ("monday", 8)
    assert (config.service.health_host, config.service.health_port) == ("127.0.0.1", 0)


def test_defaults_are_inherited_and_a_server_overrides_them() -> None:
    config = parse_config(
        {
            "defaults": {"configuration_name": "SstpBot", "client_view": False, "keep_alive_minutes": 5},
            "servers": {
                "vpn01": {"host": "vpn01.corp.example.com", "client_endpoint": "vpn.example.com:443"},
                "vpn02": {"host": "vpn02.corp.example.com", "configuration_name": "Microsoft.PowerShell"},
            },
            "schedule": {"sweep_every_minutes": 15, "alert_channel": "C0123ABCD", "digest_weekday": "Friday"},
            "service": {"health_port": 9100},
        }
    )
    vpn01, vpn02 = config.server("vpn01"), config.server("vpn02")
    assert (vpn01.configuration_name, vpn01.client_view, vpn01.keep_alive_minutes) == ("SstpBot", False, 5.0)
    assert vpn01.client_endpoint == "vpn.example.com:443"
    assert vpn02.configuration_name == "Microsoft.PowerShell"
    assert config.schedule.digest_weekday == "friday"
    assert config.service.health_port == 9100


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (_config(defaults={"client_endpoint": "x:443"}), "client_endpoint"),
        ({"servers": {"vpn01": {"host": "h", "client_endpoint": "h"}}}, "client_endpoint"),
        ({"servers": {"vpn01": {"host": "h", "client_endpoint": "h:70000"}}}, "client_endpoint"),
        ({"servers": {"vpn01": {"host": "h", "configuration_name": "a b;"}}}, "configuration_name"),
        ({"servers": {"vpn01": {"host": "h", "public_name": "vpn.example.com."}}}, "public_name"),
        ({"servers": {"vpn01": {"host": "h", "public_name": "*.example.com"}}}, "public_name"),
        ({"servers": {"vpn01": {"host": "h", "restart_timeout_seconds": 0}}}, "restart_timeout_seconds"),
        ({"servers": {"vpn01": {"host": "h", "keep_alive_minutes": -1}}}, "keep_alive_minutes"),
        ({"servers": {"vpn01": {"host": "h", "client_view": "yes"}}}, "client_view"),
        (_config(schedule={"sweep_every_minutes": -5}), "sweep_every_minutes"),
        (_config(schedule={"alert_channel": "general"}), "alert_channel"),
        (_config(schedule={"digest_weekday": "funday"}), "digest_weekday"),
        (_config(schedule={"digest_hour_utc": 24}), "digest_hour_utc"),
        (_config(schedule={"every": 5}), "every"),
        (_config(service={"health_port": 70000}), "health_port"),
    ],
)
def test_bad_values_are_refused_naming_the_key(data: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        parse_config(data)


def test_an_alert_channel_outside_the_allowed_channels_is_refused_naming_both_keys() -> None:
    # Its alert cards would carry Approve/Reject buttons that the channel gate refuses on every click.
    with pytest.raises(ConfigError) as refused:
        parse_config(_config(slack={"allowed_channels": ["C0OPS0001"]}, schedule={"alert_channel": "C0ALERT01"}))
    message = str(refused.value)
    assert "schedule.alert_channel" in message and "slack.allowed_channels" in message
    assert "C0ALERT01" in message and "add" in message.lower()


@pytest.mark.parametrize(
    ("allowed", "alert"),
    [([], "C0ALERT01"), (["C0OPS0001", "C0ALERT01"], "C0ALERT01"), (["C0OPS0001"], "")],
)
def test_an_alert_channel_anywhere_allowed_is_accepted(allowed: list[str], alert: str) -> None:
    config = parse_config(_config(slack={"allowed_channels": allowed}, schedule={"alert_channel": alert}))
    assert config.schedule.alert_channel == alert


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"defaults": {"connect_timeout": float("nan")}, "servers": {"vpn01": {"host": "h"}}}, "connect_timeout"),
        ({"defaults": {"operation_timeout": float("inf")}, "servers": {"vpn01": {"host": "h"}}}, "operation_timeout"),
        ({"servers": {"vpn01": {"host": "h", "restart_timeout_seconds": float("nan")}}}, "restart_timeout_seconds"),
        ({"servers": {"vpn01": {"host": "h", "cert_expiry_warning_days": 99999999999}}}, "cert_expiry_warning_days"),
        ({"slack": {"plan_ttl_minutes": 99999999999999}}, "plan_ttl_minutes"),
        ({"slack": {"http_host": ""}}, "http_host"),
        # [defaults] no server inherits yet: still judged (diagnose applies them to unlisted servers)
        ({"defaults": {"transport": "ftp"}}, "transport"),
        ({"defaults": {"port": "x"}}, "port"),
    ],
)
def test_values_that_would_fail_later_are_refused_when_loaded(data: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        parse_config(data)


def test_defaults_without_servers_need_no_user_name_yet() -> None:
    assert parse_config({"defaults": {"auth": "ntlm"}}).servers == {}
