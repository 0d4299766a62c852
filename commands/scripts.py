"""The shipped PowerShell scripts (DESIGN 9): their names, typed parameters, and validation.

Two registries: `SCRIPTS`, the short primitives shipped as `.ps1` files (DESIGN 9 [2]), and
`PLAN_ACTIONS`, the step actions a plan holds and an admin approves (DESIGN 5). Four actions are the
script of the same name; `bind_sstp_certificate` and `restart_remoteaccess` are sequences of
primitives carried out by `commands.executor`, where the waiting and the rollback live.

User text never becomes PowerShell source: the runner sends a script's text unchanged and passes every
value with `add_parameter`, after `validate_params` has checked it here. Each script's own `param()`
block checks it again on the server. `tests/scripts/` proves the two declarations agree.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from commands.errors import UsageError

# Patterns are applied with fullmatch (a bare `$` also accepts a trailing newline); re.ASCII keeps `\d`
# from matching non-ASCII digits.
THUMBPRINT_RE = re.compile(r"^[0-9A-F]{40}$")
# IP:port, [IPv6]:port or hostname:port (DOMAIN 2.2, 11).
IPV4_ENDPOINT_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3}):(\d{1,5})$", re.ASCII)
IPV6_ENDPOINT_RE = re.compile(r"^\[[0-9A-Fa-f:.]+\]:(\d{1,5})$", re.ASCII)
HOSTNAME_ENDPOINT_RE = re.compile(
    r"^(?=.{1,253}:)(\*|[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*:(\d{1,5})$",
    re.ASCII,
)
# IIS site names: printable, no quotes or control characters (they are passed to appcmd as one
# argument). A name ending in a backslash is refused: Windows PowerShell 5.1 quotes an argument with a
# space as "...", and a trailing backslash would escape that closing quote for appcmd's command-line
# parser, so appcmd would read another site name (expert review, docs/scripts.md). Such a binding gets
# guidance instead of a plan step.
SITE_RE = re.compile(r"^[^\"\x00-\x1f]{0,259}[^\"\x00-\x1f\\]$")
# IIS bindingInformation "IP:port:host", e.g. "*:443:" or "10.0.0.5:443:vpn.example.com". An IPv6
# address with a zone ID ("[fe80::1%12]") is refused: netsh and appcmd do not take the zone in an
# endpoint, so such a binding gets guidance (docs/scripts.md).
BINDING_INFO_RE = re.compile(r"^(\*|[0-9.]+|\[[0-9A-Fa-f:]+\]):(\d{1,5}):([A-Za-z0-9.*-]{0,253})$", re.ASCII)
# The wildcard endpoints SSTP binds in HTTP.sys (DOMAIN 0): the only ones add_sstp_httpsys_binding touches.
WILDCARD_ENDPOINT_RE = re.compile(r"^(0\.0\.0\.0|\[::\]):(\d{1,5})$", re.ASCII)
ACTION_RE = re.compile(r"^(Start|Stop)$")
# delete_url_reservation takes only a port's root reservation or SSTP's own path: only those can block
# SSTP's URL (DOMAIN 14). Any other path (DirectAccess IP-HTTPS's /C574AC30-.../, an application's) is
# never deleted, whatever a plan asks (expert review: URLACL_CONFLICT deleted IP-HTTPS's reservation).
URL_RE = re.compile(
    r"^https?://[^\s/\"'`$;|&<>]{1,255}/(sra_\{BA195980-CD49-458B-9E23-C84EE0ADCD75\}/)?$", re.IGNORECASE
)

INCLUDE_RE = re.compile(r"^# sstp-bot-include: ([a-z_]+)\n", re.MULTILINE)
SCRIPT_HEADER_RE = re.compile(r"^# sstp-bot-script: ([a-z_]+)\s*$")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    kind: type  # str or int
    required: bool
    pattern: re.Pattern[str] | None = None
    minimum: int | None = None
    maximum: int | None = None


def _port_ok(port: str) -> bool:
    # As netsh prints a port: 1 to 65535, no leading zero.
    return not port.startswith("0") and 0 < int(port) < 65536


def _endpoint_ok(value: str) -> bool:
    """`IP:port`, `[IPv6]:port` or `hostname:port` as netsh lists HTTP.sys bindings (DESIGN 2)."""
    host, _, port = value.rpartition(":")
    if IPV4_ENDPOINT_RE.fullmatch(value):
        address: type[ipaddress.IPv4Address | ipaddress.IPv6Address] = ipaddress.IPv4Address
    elif IPV6_ENDPOINT_RE.fullmatch(value):
        address, host = ipaddress.IPv6Address, host[1:-1]
    elif HOSTNAME_ENDPOINT_RE.fullmatch(value):
        # A name of digits and dots only (`1.2.3.4.5`, `123`) is neither an address nor a host name.
        return _port_ok(port) and not all(label.isdigit() for label in host.split("."))
    else:
        return False
    try:
        address(host)  # no leading zeros, each part in range, `::` at most once
    except ValueError:
        return False
    return _port_ok(port)


SCRIPTS: dict[str, tuple[ParamSpec, ...]] = {
    "probe": (
        ParamSpec("EventHours", int, False, minimum=1, maximum=720),
        # DOMAIN 14: thousands of Schannel 36870 events on a broken key; each query is capped.
        ParamSpec("MaxEvents", int, False, minimum=1, maximum=5000),
    ),
    "remove_iis_binding": (
        ParamSpec("Site", str, True, SITE_RE),
        ParamSpec("BindingInformation", str, True, BINDING_INFO_RE),
    ),
    "restart_iis": (),
    "delete_httpsys_binding": (ParamSpec("Endpoint", str, True),),
    "add_sstp_httpsys_binding": (
        ParamSpec("Endpoint", str, True, WILDCARD_ENDPOINT_RE),
        ParamSpec("Thumbprint", str, True, THUMBPRINT_RE),
    ),
    "delete_url_reservation": (ParamSpec("Url", str, True, URL_RE),),
    "set_sstp_certificate": (ParamSpec("Thumbprint", str, True, THUMBPRINT_RE),),
    "control_remoteaccess": (ParamSpec("Action", str, True, ACTION_RE),),
    "remoteaccess_state": (),
}

#: The scripts that change the server (each checks elevation first and writes a fix result).
FIX_SCRIPTS = tuple(name for name in SCRIPTS if name not in ("probe", "remoteaccess_state"))

#: Plan step actions (DESIGN 5) and their parameters. The two sequences take only what the admin
#: approves (the thumbprint); their deadline is the server's `restart_timeout_seconds`.
PLAN_ACTIONS: dict[str, tuple[ParamSpec, ...]] = {
    "remove_iis_binding": SCRIPTS["remove_iis_binding"],
    "restart_iis": SCRIPTS["restart_iis"],
    "delete_httpsys_binding": SCRIPTS["delete_httpsys_binding"],
    "delete_url_reservation": SCRIPTS["delete_url_reservation"],
    "bind_sstp_certificate": (ParamSpec("Thumbprint", str, True, THUMBPRINT_RE),),
    "restart_remoteaccess": (),
}

FIX_ACTIONS = tuple(PLAN_ACTIONS)


def normalise_thumbprint(value: str) -> str:
    """Upper-case hex without separators; drops spaces and the invisible U+200E certmgr copy/paste adds (DOMAIN 11)."""
    return re.sub(r"[\s\u200e\u200f:]", "", value).upper()


def validate_params(script: str, params: dict[str, Any]) -> dict[str, str | int]:
    """Check `params` against a script's or a plan action's declaration; returns them normalised.

    Raises UsageError."""
    declared = SCRIPTS.get(script, PLAN_ACTIONS.get(script))
    if declared is None:
        raise UsageError(f"unknown script {script!r}")
    specs = {spec.name: spec for spec in declared}
    unknown = set(params) - set(specs)
    if unknown:
        raise UsageError(f"{script}: unknown parameter(s) {', '.join(sorted(unknown))}")
    clean: dict[str, str | int] = {}
    for spec in specs.values():
        if spec.name not in params or params[spec.name] is None:
            if spec.required:
                raise UsageError(f"{script}: parameter {spec.name} is required")
            continue
        value = params[spec.name]
        if spec.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise UsageError(f"{script}: {spec.name} must be a whole number")
            if (spec.minimum is not None and value < spec.minimum) or (spec.maximum is not None and value > spec.maximum):
                raise UsageError(f"{script}: {spec.name} must be between {spec.minimum} and {spec.maximum}")
            clean[spec.name] = value
            continue
        if not isinstance(value, str):
            raise UsageError(f"{script}: {spec.name} must be text")
        if spec.name == "Thumbprint":
            value = normalise_thumbprint(value)
        if spec.name == "Endpoint":
            ok = _endpoint_ok(value) and (spec.pattern is None or bool(spec.pattern.fullmatch(value)))
        else:
            ok = spec.pattern is None or bool(spec.pattern.fullmatch(value))
        if ok and spec.name == "BindingInformation":
            ok = _port_ok(value.split(":")[-2])
        if not ok:
            raise UsageError(f"{script}: {spec.name} {value!r} is not valid")
        clean[spec.name] = value
    return clean


@cache
def load_script(name: str) -> str:
    """The text sent to the server for a shipped script (package data `commands/scripts/NAME.ps1`).

    Helpers several scripts need stand once, in `commands/scripts/lib/LIB.ps1`; a script names them
    with a line `# sstp-bot-include: LIB`, which is replaced by that file (less its leading comment).
    Each script still goes to the server whole, as one pipeline: nothing is installed there.
    """
    if name not in SCRIPTS:
        raise UsageError(f"unknown script {name!r}")
    return _include(_read("scripts", f"{name}.ps1"))


def _read(*parts: str) -> str:
    return resources.files("commands").joinpath(*parts).read_text(encoding="utf-8")


def _include(text: str) -> str:
    def library(match: re.Match[str]) -> str:
        lines = _read("scripts", "lib", f"{match.group(1)}.ps1").splitlines(keepends=True)
        while lines and lines[0].startswith("#"):
            lines.pop(0)
        return "".join(lines)

    return INCLUDE_RE.sub(library, text)


def script_name(text: str) -> str | None:
    """The NAME of a script's `# sstp-bot-script: NAME` header line, or None."""
    first = text.lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
    m = SCRIPT_HEADER_RE.match(first)
    return m.group(1) if m else None
