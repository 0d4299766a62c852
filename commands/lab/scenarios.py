"""Scenarios: data files describing emulated RRAS servers (commands/lab/scenarios/*.toml).

A single-server scenario is a set of overrides over a healthy baseline (see `BASELINE` and
docs/lab.md): tables merge key by key, arrays replace. Certificates are named (`sstp`, `iis`, ...)
and referenced by name elsewhere; they are issued by the lab CA (`commands.lab.pki`) with validity
relative to the time the lab starts. A fleet scenario lists servers, each naming a scenario.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

from commands.errors import ConfigError
from commands.lab import pki
from commands.lab.twin import (
    APP_IDS,
    SSTP_URL_SDDL,
    Certificate,
    ForeignListener,
    HttpSysBinding,
    IisBinding,
    RemoteAccessModel,
    Service,
    TwinState,
    sstp_url,
)

DEFAULT_PUBLIC_NAME = "vpn.example.com"
DEFAULT_STARTED_MINUTES_AGO = 3 * 24 * 60

# The healthy server every single-server scenario starts from.
BASELINE: dict[str, Any] = {
    "host": {"is_admin": True},
    "certificates": {
        "sstp": {"common_name": "{public_name}", "dns_names": ["{public_name}"], "not_before_days": -60,
                 "not_after_days": 300},
    },
    "sstp": {"certificate": "sstp", "use_https": True, "is_hash_configured_by_admin": True, "listener_port": 443},
    "services": {
        "RemoteAccess": {"status": "Running", "start_type": "Automatic"},
        "SstpSvc": {"status": "Running", "start_type": "Manual"},
        "W3SVC": {"status": "Running", "start_type": "Automatic"},
        "WAS": {"status": "Running", "start_type": "Manual"},
    },
    "http_sys": {
        "ip_bindings": [
            {"endpoint": "0.0.0.0:443", "certificate": "sstp", "owner": "sstp"},
            {"endpoint": "[::]:443", "certificate": "sstp", "owner": "sstp"},
        ],
        "sni_bindings": [],
        "url_reservations": ["sstp"],
    },
    "iis": {"installed": True, "https_bindings": []},
    "listener": {"sstp_listening": True},
    "vpn_connections": 12,
    "events": [],
    "probe_errors": [],
}


@dataclass(frozen=True)
class ServerSpec:
    """One server of a scenario, ready to be built into a twin."""

    name: str
    scenario: str
    description: str
    public_name: str
    data: dict[str, Any] = field(repr=False)
    expect: tuple[str, ...] = ()
    fixable: bool | None = None
    #: A scenario whose fix is tested on its own (a RemoteAccess fault, DirectAccess): what `fix`
    #: ends in ("FAILED" with rollback, or "NO_CERTIFICATE_CHANGE"). None: the generic tests apply.
    fix_outcome: str | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    servers: tuple[ServerSpec, ...]
    is_fleet: bool = False


def scenario_names() -> list[str]:
    """Every shipped scenario, by file name."""
    folder = resources.files("commands.lab").joinpath("scenarios")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


@cache
def _raw(name: str) -> dict[str, Any]:
    folder = resources.files("commands.lab").joinpath("scenarios")
    path = folder.joinpath(f"{name}.toml")
    if not path.is_file():
        raise ConfigError(f"unknown lab scenario {name!r}; known: {', '.join(scenario_names())}")
    return tomllib.loads(path.read_text(encoding="utf-8"))


def load_scenario(name: str) -> Scenario:
    """A scenario by name (single server or fleet)."""
    raw = _raw(name)
    description = str(raw.get("description", ""))
    if "servers" in raw:
        specs = []
        for entry in raw["servers"]:
            inner = load_scenario(str(entry["scenario"]))
            if inner.is_fleet or len(inner.servers) != 1:
                raise ConfigError(f"fleet scenario {name}: {entry['scenario']} must be a single-server scenario")
            base = inner.servers[0]
            specs.append(
                ServerSpec(
                    name=str(entry["name"]),
                    scenario=base.scenario,
                    description=base.description,
                    public_name=str(entry.get("public_name", base.public_name)),
                    data=base.data,
                    expect=base.expect,
                    fixable=base.fixable,
                    fix_outcome=base.fix_outcome,
                )
            )
        return Scenario(name, description, tuple(specs), is_fleet=True)
    data = _merge(copy.deepcopy(BASELINE), {k: v for k, v in raw.items() if k not in _META_KEYS})
    for removed in raw.get("remove_certificates", []):
        data["certificates"].pop(removed, None)
    spec = ServerSpec(
        name=str(raw.get("server", name)),
        scenario=name,
        description=description,
        public_name=str(raw.get("public_name", DEFAULT_PUBLIC_NAME)),
        data=data,
        expect=tuple(raw.get("expect", ())),
        fixable=raw.get("fixable"),
        fix_outcome=raw.get("fix_outcome"),
    )
    return Scenario(name, description, (spec,))


_META_KEYS = {"description", "server", "public_name", "expect", "fixable", "fix_outcome", "remove_certificates"}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def build_state(spec: ServerSpec, now: datetime | None = None) -> TwinState:
    """The twin state of one server: certificates issued now, names resolved, defaults applied."""
    now = now or datetime.now(UTC)
    data = spec.data
    certs: dict[str, Certificate] = {}
    for cert_id, cert_spec in data.get("certificates", {}).items():
        certs[cert_id] = _issue(spec, cert_id, cert_spec, now)

    def cert_hash(ref: str | None) -> str | None:
        if ref is None:
            return None
        if ref in certs:
            return certs[ref].thumbprint
        if len(ref) in (40, 64):
            return ref.upper()
        raise ConfigError(f"scenario {spec.scenario}: unknown certificate {ref!r}")

    sstp = data.get("sstp", {})
    sstp_cert = certs.get(sstp.get("certificate", "")) if sstp.get("certificate") else None
    port = int(sstp.get("listener_port", 443))
    services: dict[str, Service | None] = {}
    for svc_name, svc in data.get("services", {}).items():
        if svc in (None, "absent", False):
            services[svc_name] = None
            continue
        # A running service started `started_minutes_ago` before the lab (default 3 days): before the
        # scenario's events unless a scenario says otherwise.
        started = None
        if svc["status"] == "Running":
            started = (now - timedelta(minutes=float(svc.get("started_minutes_ago", DEFAULT_STARTED_MINUTES_AGO))))
            started = started.replace(microsecond=0)
        services[svc_name] = Service(svc["status"], svc["start_type"], started)
    http_sys = data.get("http_sys", {})

    def bindings(entries: list[dict[str, Any]]) -> list[HttpSysBinding]:
        out = []
        for b in entries:
            owner = str(b.get("owner", "sstp"))
            app_id = APP_IDS.get(owner, owner)
            out.append(
                HttpSysBinding(
                    str(b["endpoint"]).replace("{port}", str(port)),
                    cert_hash(b.get("certificate")) or "",
                    app_id,
                    str(b.get("store", "MY")),
                    b.get("ctl_store"),
                )
            )
        return out

    reservations = []
    for r in http_sys.get("url_reservations", []):
        if r == "sstp":
            reservations.append({"url": sstp_url(port), "sddl": SSTP_URL_SDDL})
        else:
            reservations.append({"url": str(r["url"]), "sddl": str(r.get("sddl", "D:(A;;GX;;;NS)"))})
    iis = data.get("iis", {})
    listener = data.get("listener", {})
    foreign = listener.get("foreign")
    host = data.get("host", {})
    events = []
    for e in data.get("events", []):
        when = now - timedelta(minutes=float(e.get("minutes_ago", 30)))
        events.append(
            {
                "provider": str(e.get("provider", "Microsoft-Windows-RasSstp")),
                "id": int(e["id"]),
                "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "message": str(e.get("message", "")),
            }
        )
    running = (services.get("RemoteAccess") or Service("Stopped")).status == "Running"
    return TwinState(
        computer_name=str(host.get("computer_name", spec.name.upper()[:15])),
        is_admin=bool(host.get("is_admin", True)),
        services=services,
        certificates=list(certs.values()),
        sha256_hash=sstp.get("sha256_hash", sstp_cert.sha256 if sstp_cert else None),
        sha1_hash=sstp.get("sha1_hash", sstp_cert.thumbprint if sstp_cert else None),
        use_https=bool(sstp.get("use_https", True)),
        is_hash_configured_by_admin=bool(sstp.get("is_hash_configured_by_admin", True)),
        listener_port=port,
        remote_access_thumbprint=sstp.get("remote_access_thumbprint", sstp_cert.thumbprint if sstp_cert else None),
        ip_bindings=bindings(http_sys.get("ip_bindings", [])),
        sni_bindings=bindings(http_sys.get("sni_bindings", [])),
        url_reservations=reservations,
        iis_installed=bool(iis.get("installed", False)),
        iis_bindings=[
            IisBinding(
                str(b.get("site", "Default Web Site")),
                str(b["binding_information"]),
                cert_hash(b.get("certificate")),
                int(b.get("ssl_flags", 0)),
            )
            for b in iis.get("https_bindings", [])
        ],
        foreign_listener=ForeignListener(int(foreign["pid"]), str(foreign["process"])) if foreign else None,
        sstp_listening=bool(listener.get("sstp_listening", True)) and running and not foreign,
        vpn_connections=int(data.get("vpn_connections", 0)) if running else 0,
        events=events,
        probe_errors=[dict(e) for e in data.get("probe_errors", [])],
        remote_access=_remote_access_model(spec, data.get("remote_access", {})),
    )


def _remote_access_model(spec: ServerSpec, raw: dict[str, Any]) -> RemoteAccessModel:
    """The `[remote_access]` table: the service's timings and faults (docs/lab.md)."""
    known = {"stop_seconds", "start_seconds", "start_fails", "set_certificate_error", "directaccess", "module_installed"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"scenario {spec.scenario}: unknown [remote_access] key(s) {', '.join(sorted(unknown))}")
    error = raw.get("set_certificate_error")
    return RemoteAccessModel(
        stop_seconds=float(raw.get("stop_seconds", 0.0)),
        start_seconds=float(raw.get("start_seconds", 0.0)),
        start_fails=bool(raw.get("start_fails", False)),
        set_certificate_error=None if error is None else str(error),
        directaccess=bool(raw.get("directaccess", False)),
        module_installed=bool(raw.get("module_installed", True)),
    )


def _issue(spec: ServerSpec, cert_id: str, c: dict[str, Any], now: datetime) -> Certificate:
    def fill(value: str) -> str:
        return value.replace("{public_name}", spec.public_name)

    issued = _issue_cached(
        fill(str(c.get("common_name", "{public_name}"))),
        tuple(fill(str(n)) for n in c.get("dns_names", ["{public_name}"])),
        _day(now, float(c.get("not_before_days", -60))),
        _day(now, float(c.get("not_after_days", 300))),
        bool(c.get("server_auth", True)),
        str(c.get("signature_hash", "sha256")),
        int(c.get("key_size", 2048 if str(c.get("key", "rsa")) == "rsa" else 256)),
        bool(c.get("revocation_urls", True)),
        f"{spec.name}/{cert_id}",
        str(c.get("key", "rsa")),
    )
    return Certificate(
        der=issued.der,
        thumbprint=issued.thumbprint,
        sha256=issued.sha256,
        has_private_key=bool(c.get("private_key", True)),
        private_key_usable=None if c.get("private_key_usable") is None else bool(c["private_key_usable"]),
        # `friendly_name_bytes`: a long friendly name, to make a probe output of several megabytes.
        friendly_name=("Filler " * int(c["friendly_name_bytes"]))[: int(c["friendly_name_bytes"])]
        if "friendly_name_bytes" in c
        else str(c.get("friendly_name", "")),
    )


def _day(now: datetime, days: float) -> datetime:
    # Whole minutes, so certificates issued for the same server in one run are identical.
    return (now + timedelta(days=days)).replace(second=0, microsecond=0)


@cache
def _issue_cached(
    common_name: str,
    dns_names: tuple[str, ...],
    not_before: datetime,
    not_after: datetime,
    server_auth: bool,
    signature_hash: str,
    key_size: int,
    revocation_urls: bool,
    owner: str,
    key: str = "rsa",
) -> pki.IssuedCertificate:
    return pki.issue_certificate(
        common_name=common_name,
        dns_names=dns_names,
        not_before=not_before,
        not_after=not_after,
        server_auth=server_auth,
        signature_hash=signature_hash,  # type: ignore[arg-type]
        key=key,  # type: ignore[arg-type]  # "rsa" or "ec", checked by pki
        key_size=key_size,
        crl_url=pki.DEFAULT_CRL_URL if revocation_urls else None,
        ocsp_url=pki.DEFAULT_OCSP_URL if revocation_urls else None,
    )
