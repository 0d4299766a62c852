"""Configuration: `sstp-bot.toml` (DESIGN 7) plus secrets from the environment.

Path: `--config`, else `SSTP_BOT_CONFIG`, else `./sstp-bot.toml`. Unknown keys and bad values are
refused with a message naming the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from commands.errors import ConfigError, UnknownServer
from commands.server import AUTH_METHODS, SERVER_NAME_RE, TRANSPORTS, ServerConfig, decode_text

DEFAULT_CONFIG_PATH = "sstp-bot.toml"
SLACK_ID_RE = re.compile(r"^[UWS][A-Z0-9]{2,}$")
CHANNEL_ID_RE = re.compile(r"^[CGD][A-Z0-9]{2,}$")
HEX64_RE = re.compile(r"^[0-9A-Fa-f]{64}\Z")
HOST_RE = re.compile(r"^[A-Za-z0-9.\-]{1,253}\Z|^\[?[0-9A-Fa-f:]+\]?\Z")


@dataclass(frozen=True)
class SlackConfig:
    mode: str = "socket"
    http_host: str = "127.0.0.1"
    http_port: int = 3000
    api_url: str = ""
    allowed_channels: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    two_person_rule: bool = True
    plan_ttl_minutes: int = 15


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///sstp-bot.db"
    auto_upgrade: bool = True


@dataclass(frozen=True)
class ScheduleConfig:
    """[2] `[schedule]`: scheduled sweeps and the weekly expiry digest run by `serve` (DESIGN 13)."""

    sweep_every_minutes: int = 0
    alert_channel: str = ""
    digest_weekday: str = "monday"
    digest_hour_utc: int = 8


@dataclass(frozen=True)
class ServiceConfig:
    """[2] `[service]`: /healthz and /metrics in Socket Mode (HTTP mode serves them on its own port)."""

    health_host: str = "127.0.0.1"
    health_port: int = 0


@dataclass(frozen=True)
class Config:
    slack: SlackConfig = field(default_factory=SlackConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    servers: dict[str, ServerConfig] = field(default_factory=dict)
    path: Path | None = None
    #: The validated `[defaults]` table, for servers analysed offline that are not in the inventory.
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def offline_server(self, name: str) -> ServerConfig:
        """The settings `diagnose` applies to a snapshot of `name`: its inventory entry when it has
        one, else `[defaults]` (expiry warning window, ...) under that name."""
        try:
            return self.server(name)
        except UnknownServer:
            host = name if HOST_RE.match(name) else "localhost"  # never contacted: diagnose is offline
            return _parse_server(name, {**self.defaults, "host": host}, where="defaults")

    def server(self, name: str) -> ServerConfig:
        """The inventory entry for `name` (case-insensitive); UnknownServer otherwise."""
        if name in self.servers:
            return self.servers[name]
        for key, server in self.servers.items():
            if key.lower() == name.lower():
                return server
        raise UnknownServer(name, list(self.servers))

    def group(self, group: str) -> list[ServerConfig]:
        members = [s for s in self.servers.values() if s.group is not None and s.group.lower() == group.lower()]
        if not members:
            known = sorted({s.group for s in self.servers.values() if s.group})
            hint = f" Known groups: {', '.join(known)}." if known else " No server has a group."
            raise ConfigError(f"Unknown group {group!r}.{hint}")
        return members


# Keys a server may set (in [defaults] or [servers.NAME]) and their types.
_SERVER_KEYS: dict[str, type | tuple[type, ...]] = {
    "host": str,
    "public_name": str,
    "group": str,
    "transport": str,
    "port": int,
    "auth": str,
    "username": str,
    "password_env": str,
    "password_file": str,
    "verify_tls": bool,
    "ca_bundle": str,
    "connect_timeout": (int, float),
    "operation_timeout": (int, float),
    "cert_expiry_warning_days": int,
    "offload_sha256": str,
    "configuration_name": str,
    "client_view": bool,
    "client_endpoint": str,
    "keep_alive_minutes": (int, float),
    "restart_timeout_seconds": (int, float),
}
_DEFAULTS_ONLY = {"host", "public_name", "group", "offload_sha256", "client_endpoint"}
#: A PSRP configuration name as `Register-PSSessionConfiguration -Name` accepts it (letters, digits,
#: dots, dashes, underscores), so nothing odd reaches the WS-Man resource URI.
CONFIGURATION_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}\Z")
ENDPOINT_RE = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]{1,253}):(\d{1,5})\Z")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SLACK_KEYS: dict[str, type | tuple[type, ...]] = {
    "mode": str,
    "http_host": str,
    "http_port": int,
    "api_url": str,
    "allowed_channels": list,
    "operators": list,
    "approvers": list,
    "two_person_rule": bool,
    "plan_ttl_minutes": int,
}
_DATABASE_KEYS: dict[str, type | tuple[type, ...]] = {"url": str, "auto_upgrade": bool}
_SCHEDULE_KEYS: dict[str, type | tuple[type, ...]] = {
    "sweep_every_minutes": int,
    "alert_channel": str,
    "digest_weekday": str,
    "digest_hour_utc": int,
}
_SERVICE_KEYS: dict[str, type | tuple[type, ...]] = {"health_host": str, "health_port": int}
_TOP_KEYS = {"slack", "database", "defaults", "servers", "schedule", "service"}


def resolve_config_path(cli_path: str | None, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(cli_path or env.get("SSTP_BOT_CONFIG") or DEFAULT_CONFIG_PATH)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration file. Raises ConfigError with a message naming the key."""
    config_path = resolve_config_path(str(path) if path is not None else None, environ)
    try:
        text = _decode(config_path.read_bytes(), config_path)
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {config_path} not found (use --config PATH or set SSTP_BOT_CONFIG)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {config_path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
    return parse_config(data, path=config_path)


def _decode(data: bytes, path: Path) -> str:
    """TOML is UTF-8; a file Notepad saved with a byte-order mark (UTF-8 or UTF-16) is read as what it
    is rather than refused."""
    try:
        return decode_text(data)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save it as UTF-8") from None


def parse_config(data: Mapping[str, Any], path: Path | None = None) -> Config:
    """Validate an already-parsed TOML document."""
    _reject_unknown("", data, _TOP_KEYS)
    slack = _parse_slack(_table(data, "slack"))
    database = _parse_database(_table(data, "database"))
    schedule = _parse_schedule(_table(data, "schedule"))
    _check_alert_channel_allowed(slack, schedule)
    service = _parse_service(_table(data, "service"))
    defaults = _table(data, "defaults")
    _reject_unknown("defaults", defaults, set(_SERVER_KEYS) - _DEFAULTS_ONLY)
    servers_table = _table(data, "servers")
    servers: dict[str, ServerConfig] = {}
    for name, table in servers_table.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"servers.{name}: expected a table")
        if not SERVER_NAME_RE.match(name):
            raise ConfigError(
                f"servers.{name}: server names may contain only letters, digits, '-', '_' and '.'"
            )
        if any(existing.lower() == name.lower() for existing in servers):
            raise ConfigError(f"servers.{name}: duplicate server name (names are case-insensitive)")
        _reject_unknown(f"servers.{name}", table, set(_SERVER_KEYS))
        merged = {**defaults, **table}
        # A server that names its own password source overrides the inherited one entirely: a
        # per-server password_file must not lose to a [defaults] password_env that happens to be set.
        if "password_file" in table and "password_env" not in table:
            merged["password_env"] = ""
        if "password_env" in table and "password_file" not in table:
            merged.pop("password_file", None)
        try:
            servers[name] = _parse_server(name, merged)
        except ConfigError as exc:
            raise _blame_defaults(exc, name, table, defaults) from None
    for key, value in defaults.items():
        _typed("defaults", key, value, _SERVER_KEYS[key])  # a wrong type, whether inherited or not
    if not servers:
        # No server inherits them yet, but `diagnose` applies `[defaults]` to a snapshot of a server
        # the inventory does not list: a bad default is reported now, not at that use.
        # (A user name may come with each server: only the values are judged here.)
        _parse_server("defaults", {"username": "any", **defaults, "host": "localhost"}, where="defaults")
    return Config(
        slack=slack,
        database=database,
        schedule=schedule,
        service=service,
        servers=servers,
        path=path,
        defaults=dict(defaults),
    )


def _blame_defaults(exc: ConfigError, name: str, table: Mapping[str, Any], defaults: Mapping[str, Any]) -> ConfigError:
    """An error about a value the server inherited from `[defaults]` names `[defaults]`, where the
    admin must edit it, not `servers.NAME`, which does not contain the key."""
    message = str(exc)
    for key in defaults:
        prefix = f"servers.{name}.{key}"
        if key not in table and message.startswith(prefix) and message[len(prefix):][:1] in (":", " ", ""):
            return ConfigError(f"[defaults] {key} (inherited by servers.{name}){message[len(prefix):]}")
    return exc


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{key}] must be a table")
    return value


def _reject_unknown(where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            place = f"{where}.{key}" if where else key
            raise ConfigError(f"unknown configuration key {place!r} (allowed: {', '.join(sorted(allowed))})")


#: The largest number any setting takes (seconds, minutes, days, ports): far above a sensible value.
MAX_NUMBER = 1_000_000


def _typed(where: str, key: str, value: Any, expected: type | tuple[type, ...]) -> Any:
    # bool is an int in Python: never accept true/false where a number is expected, or the reverse.
    bad_bool = isinstance(value, bool) and expected is not bool and expected != (bool,)
    if bad_bool or not isinstance(value, expected):
        names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
        raise ConfigError(f"{where}.{key}: expected {names}, got {type(value).__name__} {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not (
        abs(value) <= MAX_NUMBER  # first: math.isfinite would overflow on a huge TOML integer
        and (isinstance(value, int) or math.isfinite(value))
    ):
        # TOML has nan and inf, and integers past what a timeout or a number of days can mean: each would
        # pass a `<= 0` test and fail later, deep in a check (a timeout, a date).
        raise ConfigError(f"{where}.{key}: {value!r} is out of range (a finite number up to {MAX_NUMBER:,})")
    return value


def _parse_slack(table: Mapping[str, Any]) -> SlackConfig:
    _reject_unknown("slack", table, set(_SLACK_KEYS))
    values: dict[str, Any] = {k: _typed("slack", k, v, _SLACK_KEYS[k]) for k, v in table.items()}
    normalised: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    cfg = replace(SlackConfig(), **normalised)
    if cfg.mode not in ("socket", "http"):
        raise ConfigError(f"slack.mode: expected 'socket' or 'http', got {cfg.mode!r}")
    if not 0 < cfg.http_port < 65536:
        raise ConfigError(f"slack.http_port: {cfg.http_port} is not a TCP port")
    if cfg.plan_ttl_minutes < 1:
        raise ConfigError("slack.plan_ttl_minutes: must be at least 1")
    if not cfg.http_host:
        raise ConfigError("slack.http_host: must not be empty (an empty host listens on every interface)")
    if cfg.api_url and not re.match(r"^https?://", cfg.api_url):
        raise ConfigError(f"slack.api_url: expected an http(s) URL, got {cfg.api_url!r}")
    for key, pattern in (("allowed_channels", CHANNEL_ID_RE), ("operators", SLACK_ID_RE), ("approvers", SLACK_ID_RE)):
        for item in getattr(cfg, key):
            if not isinstance(item, str) or not pattern.match(item):
                raise ConfigError(f"slack.{key}: {item!r} is not a Slack ID (like U0123ABCD or S0123ABCD)")
    return cfg


def _parse_database(table: Mapping[str, Any]) -> DatabaseConfig:
    _reject_unknown("database", table, set(_DATABASE_KEYS))
    values = {k: _typed("database", k, v, _DATABASE_KEYS[k]) for k, v in table.items()}
    return replace(DatabaseConfig(), **values)


def _parse_schedule(table: Mapping[str, Any]) -> ScheduleConfig:
    _reject_unknown("schedule", table, set(_SCHEDULE_KEYS))
    values = {k: _typed("schedule", k, v, _SCHEDULE_KEYS[k]) for k, v in table.items()}
    cfg = replace(ScheduleConfig(), **values)
    if cfg.sweep_every_minutes < 0:
        raise ConfigError("schedule.sweep_every_minutes: must be 0 (off) or more")
    if cfg.alert_channel and not CHANNEL_ID_RE.match(cfg.alert_channel):
        raise ConfigError(f"schedule.alert_channel: {cfg.alert_channel!r} is not a channel ID (like C0123ABCD)")
    if cfg.digest_weekday.lower() not in WEEKDAYS:
        raise ConfigError(f"schedule.digest_weekday: expected one of {', '.join(WEEKDAYS)}, got {cfg.digest_weekday!r}")
    if not 0 <= cfg.digest_hour_utc <= 23:
        raise ConfigError(f"schedule.digest_hour_utc: expected 0 to 23, got {cfg.digest_hour_utc}")
    return replace(cfg, digest_weekday=cfg.digest_weekday.lower())


def _check_alert_channel_allowed(slack: SlackConfig, schedule: ScheduleConfig) -> None:
    """An alert card carries Approve/Reject buttons (DESIGN 8), and the channel gate refuses every
    click outside `allowed_channels`: an alert channel the gate refuses would show plans nobody can
    ever decide. Empty `allowed_channels` means anywhere, so any alert channel is fine."""
    if schedule.alert_channel and slack.allowed_channels and schedule.alert_channel not in slack.allowed_channels:
        raise ConfigError(
            f"schedule.alert_channel: {schedule.alert_channel!r} is not in slack.allowed_channels "
            f"({', '.join(slack.allowed_channels)}), so every Approve/Reject click on its alert cards would be "
            f"refused; add {schedule.alert_channel!r} to slack.allowed_channels (or leave allowed_channels empty)"
        )


def _parse_service(table: Mapping[str, Any]) -> ServiceConfig:
    _reject_unknown("service", table, set(_SERVICE_KEYS))
    values = {k: _typed("service", k, v, _SERVICE_KEYS[k]) for k, v in table.items()}
    cfg = replace(ServiceConfig(), **values)
    if not 0 <= cfg.health_port < 65536:
        raise ConfigError(f"service.health_port: {cfg.health_port} is not a TCP port (0 = off)")
    if not cfg.health_host:
        raise ConfigError("service.health_host: must not be empty")
    return cfg


def check_public_name(name: str, where: str) -> str:
    """The name VPN clients connect to, as the configuration and `diagnose --public-name` take it."""
    if name.endswith("."):
        # DESIGN 4 [2]: TLS clients refuse a trailing dot on either side; say so rather than mis-match.
        raise ConfigError(f"{where}: {name!r} ends with a dot; write the name without it")
    if "*" in name or not name.strip() or any(c.isspace() for c in name):
        raise ConfigError(f"{where}: {name!r} is not a host name (clients connect to a name, not a pattern)")
    return name


def _parse_server(name: str, table: Mapping[str, Any], where: str | None = None) -> ServerConfig:
    where = where or f"servers.{name}"
    values = {k: _typed(where, k, v, _SERVER_KEYS[k]) for k, v in table.items()}
    if "host" not in values or not values["host"]:
        raise ConfigError(f"{where}.host is required")
    for optional in (
        "ca_bundle",
        "password_env",
        "password_file",
        "username",
        "public_name",
        "group",
        "offload_sha256",
        "client_endpoint",
    ):
        if values.get(optional) == "":
            values[optional] = None
    if "port" not in values and values.get("transport") == "http":
        values["port"] = 5985  # WinRM's HTTP port; 5986 (the default) is HTTPS
    known = {f.name for f in fields(ServerConfig)}
    server = ServerConfig(name=name, **{k: v for k, v in values.items() if k in known})
    if not HOST_RE.match(server.host):
        raise ConfigError(f"{where}.host: {server.host!r} is not a host name or IP address")
    if server.transport not in TRANSPORTS:
        raise ConfigError(f"{where}.transport: expected one of {', '.join(TRANSPORTS)}, got {server.transport!r}")
    if server.auth not in AUTH_METHODS:
        raise ConfigError(f"{where}.auth: expected one of {', '.join(AUTH_METHODS)}, got {server.auth!r}")
    if server.auth == "basic" and server.transport != "https":
        raise ConfigError(f"{where}: basic authentication is only allowed over https (it would send the password in clear)")
    if server.auth in ("ntlm", "credssp", "basic") and not server.username:
        # Only Kerberos (negotiate/kerberos) can authenticate from a ticket without a user name.
        raise ConfigError(f"{where}.username is required with auth = {server.auth!r}")
    if not 0 < server.port < 65536:
        raise ConfigError(f"{where}.port: {server.port} is not a TCP port")
    for key in ("connect_timeout", "operation_timeout"):
        if getattr(server, key) <= 0:
            raise ConfigError(f"{where}.{key}: must be positive")
    if server.cert_expiry_warning_days < 0:
        raise ConfigError(f"{where}.cert_expiry_warning_days: must be 0 or more")
    if server.public_name is not None:
        check_public_name(server.public_name, f"{where}.public_name")
    if not CONFIGURATION_NAME_RE.match(server.configuration_name):
        raise ConfigError(
            f"{where}.configuration_name: {server.configuration_name!r} is not a PowerShell session "
            "configuration name (like Microsoft.PowerShell or SstpBot)"
        )
    if server.client_endpoint is not None:
        match = ENDPOINT_RE.match(server.client_endpoint)
        if not match or not 0 < int(match.group(1)) < 65536:
            raise ConfigError(
                f"{where}.client_endpoint: expected host:port or [IPv6]:port, got {server.client_endpoint!r}"
            )
    if server.keep_alive_minutes < 0:
        raise ConfigError(f"{where}.keep_alive_minutes: must be 0 (off) or more")
    if server.restart_timeout_seconds <= 0:
        raise ConfigError(f"{where}.restart_timeout_seconds: must be positive")
    if server.offload_sha256 is not None:
        if not HEX64_RE.match(server.offload_sha256):
            raise ConfigError(f"{where}.offload_sha256: expected 64 hex characters (a SHA-256 hash)")
        server = replace(server, offload_sha256=server.offload_sha256.upper())
    return replace(
        server,
        connect_timeout=float(server.connect_timeout),
        operation_timeout=float(server.operation_timeout),
        keep_alive_minutes=float(server.keep_alive_minutes),
        restart_timeout_seconds=float(server.restart_timeout_seconds),
    )
