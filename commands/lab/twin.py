"""The RRAS twin: a Python model of one Windows RRAS server, with Windows' semantics (DOMAIN.md).

`probe()` answers snapshot v1 (DESIGN 3) from the state; the fix methods change it the way the real
scripts change Windows. The semantics that matter for safety (docs/lab.md lists all of them):

- RRAS creates its HTTP.sys bindings on `0.0.0.0:PORT` and `[::]:PORT` *only where none exist*
  (DOMAIN 0, RRASBLOG-CHG1): binding a certificate leaves a foreign or stale binding in place.
- Restarting RemoteAccess drops every connected VPN user (DOMAIN 1.3).
- Removing an IIS config binding does not remove its HTTP.sys binding (DOMAIN 4); IIS re-asserts its
  remaining https bindings in HTTP.sys when it restarts (pessimistic model, docs/lab.md).
- Without elevation, every change is refused with access denied (netsh error 5; DOMAIN 6).
"""

from __future__ import annotations

import base64
import copy
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

SSTP_APP_ID = "{ba195980-cd49-458b-9e23-c84ee0adcd75}"
IIS_APP_ID = "{4dc3e181-e14b-4a21-b022-59fc669b0914}"
ADFS_APP_ID = "{5d89a20c-beab-4389-9447-324788eb944a}"
APP_IDS = {"sstp": SSTP_APP_ID, "iis": IIS_APP_ID, "adfs": ADFS_APP_ID}
SSTP_URL_TEMPLATE = "https://+:{port}/sra_{{BA195980-CD49-458b-9E23-C84EE0ADCD75}}/"
SSTP_URL_SDDL = (
    "D:(A;;GA;;;S-1-5-80-3435701886-799518250-3791383489-3228296122-2938884314)(A;;GA;;;BA)(A;;GA;;;SY)"
)


@dataclass
class Certificate:
    """One certificate in Cert:\\LocalMachine\\My."""

    der: bytes
    thumbprint: str
    sha256: str
    has_private_key: bool = True
    friendly_name: str = ""

    def to_snapshot(self) -> dict[str, Any]:
        return {
            "thumbprint": self.thumbprint,
            "has_private_key": self.has_private_key,
            "friendly_name": self.friendly_name,
            "der": base64.b64encode(self.der).decode("ascii"),
        }


@dataclass
class HttpSysBinding:
    """An HTTP.sys SSL binding (`netsh http show sslcert`), IP:port or hostname:port (SNI)."""

    endpoint: str
    cert_hash: str
    app_id: str
    store: str = "MY"
    ctl_store: str | None = None

    def to_snapshot(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "cert_hash": self.cert_hash,
            "app_id": self.app_id,
            "store": self.store,
            "ctl_store": self.ctl_store,
        }


@dataclass
class IisBinding:
    """An https `<binding>` of an IIS site in applicationHost.config."""

    site: str
    binding_information: str
    cert_hash: str | None
    ssl_flags: int = 0

    @property
    def port(self) -> int:
        return int(self.binding_information.rsplit(":", 2)[-2])

    @property
    def http_sys_endpoint(self) -> str:
        """Where IIS puts this binding in HTTP.sys: SNI when the host is set and sslFlags has bit 1."""
        ip, port, host = _split_binding_information(self.binding_information)
        if host and self.ssl_flags & 1:
            return f"{host}:{port}"
        if ip == "*":
            return f"0.0.0.0:{port}"
        return f"{ip}:{port}"


def _split_binding_information(value: str) -> tuple[str, str, str]:
    host_split = value.rsplit(":", 1)
    ip_port = host_split[0]
    host = host_split[1] if len(host_split) > 1 else ""
    ip, _, port = ip_port.rpartition(":")
    return ip, port, host


@dataclass
class Service:
    status: str = "Running"
    start_type: str = "Automatic"
    started_at: datetime | None = None  # when the service (its process) last started; None while stopped

    def to_snapshot(self) -> dict[str, Any]:
        started = self.started_at if self.status == "Running" else None
        return {
            "status": self.status,
            "start_type": self.start_type,
            "started_at": None if started is None else started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


@dataclass
class ForeignListener:
    """A process other than HTTP.sys (PID 4) holding the SSTP port."""

    pid: int
    process: str
    local_address: str = "0.0.0.0"


@dataclass
class TwinState:
    """Everything the probe reads. Scenario files fill it (commands.lab.scenarios)."""

    computer_name: str = "VPN01"
    os_caption: str = "Microsoft Windows Server 2022 Standard"
    os_build: str = "20348"
    ps_version: str = "5.1.20348.2849"
    is_admin: bool = True
    services: dict[str, Service | None] = field(default_factory=dict)
    certificates: list[Certificate] = field(default_factory=list)
    sha256_hash: str | None = None
    sha1_hash: str | None = None
    use_https: bool = True
    is_hash_configured_by_admin: bool = True
    listener_port: int = 443
    vpn_status: str = "Installed"
    remote_access_thumbprint: str | None = None
    ip_bindings: list[HttpSysBinding] = field(default_factory=list)
    sni_bindings: list[HttpSysBinding] = field(default_factory=list)
    url_reservations: list[dict[str, str]] = field(default_factory=list)
    iis_installed: bool = False
    iis_bindings: list[IisBinding] = field(default_factory=list)
    foreign_listener: ForeignListener | None = None
    sstp_listening: bool = True
    vpn_connections: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    probe_errors: list[dict[str, str]] = field(default_factory=list)


class RrasTwin:
    """One emulated RRAS server. Thread-safe: every operation holds the twin's lock."""

    def __init__(self, state: TwinState, *, clock: Any = None) -> None:
        self.state = state
        self.clock = clock or (lambda: datetime.now(UTC))
        self.lock = threading.RLock()
        self.actions: list[tuple[str, dict[str, Any]]] = []  # fix scripts applied, in order

    # --- reading ----------------------------------------------------------------------------------

    def copy_state(self) -> TwinState:
        with self.lock:
            return copy.deepcopy(self.state)

    def find_certificate(self, thumbprint: str) -> Certificate | None:
        thumbprint = thumbprint.upper()
        return next((c for c in self.state.certificates if c.thumbprint == thumbprint), None)

    def _sstp_certificate(self) -> Certificate | None:
        s = self.state
        if s.sha256_hash:
            found = next((c for c in s.certificates if c.sha256 == s.sha256_hash), None)
            if found:
                return found
        for thumb in (s.sha1_hash, s.remote_access_thumbprint):
            if thumb and (found := self.find_certificate(thumb)):
                return found
        return None

    def _service_running(self, name: str) -> bool:
        service = self.state.services.get(name)
        return service is not None and service.status == "Running"

    def listeners(self) -> list[dict[str, Any]]:
        s = self.state
        if s.foreign_listener is not None:
            fl = s.foreign_listener
            return [{"local_address": fl.local_address, "port": s.listener_port, "pid": fl.pid, "process": fl.process}]
        iis_listening = (
            s.iis_installed
            and self._service_running("W3SVC")
            and any(b.port == s.listener_port for b in s.iis_bindings)
        )
        sstp = s.sstp_listening and self._service_running("RemoteAccess")
        if sstp or iis_listening:
            return [
                {"local_address": "0.0.0.0", "port": s.listener_port, "pid": 4, "process": "System"},
                {"local_address": "::", "port": s.listener_port, "pid": 4, "process": "System"},
            ]
        return []

    def probe(self, event_hours: int = 24) -> dict[str, Any]:
        """Snapshot v1 (DESIGN 3) of the current state."""
        with self.lock:
            s = self.state
            now = self.clock()
            port = s.listener_port
            since = now - timedelta(hours=event_hours)
            events = [e for e in s.events if _parse_time(e["time"]) >= since]
            return {
                "schema": "sstp-bot/snapshot/v1",
                "collected_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "host": {
                    "computer_name": s.computer_name,
                    "os_caption": s.os_caption,
                    "os_build": s.os_build,
                    "ps_version": s.ps_version,
                    "is_admin": s.is_admin,
                },
                "services": {
                    name: None if svc is None else svc.to_snapshot() for name, svc in s.services.items()
                },
                "sstp": {
                    "sha256_hash": s.sha256_hash,
                    "sha1_hash": s.sha1_hash,
                    "use_https": s.use_https,
                    "is_hash_configured_by_admin": s.is_hash_configured_by_admin,
                    "listener_port": port,
                    "remote_access": {"vpn_status": s.vpn_status, "thumbprint": s.remote_access_thumbprint},
                },
                "http_sys": {
                    "ip_bindings": [b.to_snapshot() for b in s.ip_bindings if _port_of(b.endpoint) == port],
                    "sni_bindings": [b.to_snapshot() for b in s.sni_bindings if _port_of(b.endpoint) == port],
                    "url_reservations": [
                        dict(r) for r in s.url_reservations if _port_of_url(r["url"]) == port
                    ],
                },
                "iis": {
                    "installed": s.iis_installed,
                    "https_bindings": [
                        {
                            "site": b.site,
                            "binding_information": b.binding_information,
                            "cert_hash": b.cert_hash,
                            "ssl_flags": b.ssl_flags,
                        }
                        for b in s.iis_bindings
                    ]
                    if s.iis_installed
                    else [],
                },
                "listeners": self.listeners(),
                "certificates": [c.to_snapshot() for c in s.certificates],
                "vpn_connections": s.vpn_connections if self._service_running("RemoteAccess") else 0,
                "events": events,
                "probe_errors": [dict(e) for e in s.probe_errors],
            }

    # --- fix scripts (DESIGN 5, 9) ----------------------------------------------------------------

    def _not_elevated(self, what: str) -> dict[str, Any] | None:
        """The shipped scripts check elevation first and answer ok=false without touching anything
        (netsh/appcmd would fail with access denied, error 5; DOMAIN 9)."""
        if self.state.is_admin:
            return None
        return _fix(False, False, f"the remote session is not elevated; {what} needs administrator rights")

    def _record(self, action: str, **params: Any) -> None:
        self.actions.append((action, params))

    def remove_iis_binding(self, site: str, binding_information: str) -> dict[str, Any]:
        """appcmd set site /-bindings: the config binding goes, the HTTP.sys binding stays (DOMAIN 4)."""
        with self.lock:
            if (refused := self._not_elevated("appcmd")) is not None:
                return refused
            self._record("remove_iis_binding", site=site, binding_information=binding_information)
            s = self.state
            if not s.iis_installed:
                return _fix(True, False, "IIS is not installed: nothing to remove")
            before = len(s.iis_bindings)
            s.iis_bindings = [
                b
                for b in s.iis_bindings
                if not (b.site.lower() == site.lower() and b.binding_information == binding_information)
            ]
            if len(s.iis_bindings) == before:
                return _fix(True, False, f"site {site!r} has no https binding {binding_information}")
            return _fix(True, True, f"removed https binding {binding_information} from site {site!r}", 0)

    def restart_iis(self) -> dict[str, Any]:
        """iisreset: W3SVC/WAS restart and IIS re-asserts its https bindings in HTTP.sys where missing."""
        with self.lock:
            if (refused := self._not_elevated("iisreset")) is not None:
                return refused
            self._record("restart_iis")
            s = self.state
            if not s.iis_installed:
                return _fix(True, False, "IIS is not installed: nothing to restart")
            now = self.clock()
            for name in ("W3SVC", "WAS"):
                if (service := s.services.get(name)) is not None:
                    s.services[name] = Service("Running", service.start_type, now)
            pushed = []
            for b in s.iis_bindings:
                if not b.cert_hash:
                    continue
                endpoint = b.http_sys_endpoint
                table = s.sni_bindings if not endpoint[0].isdigit() and not endpoint.startswith("[") else s.ip_bindings
                if not any(x.endpoint.lower() == endpoint.lower() for x in table):
                    table.append(HttpSysBinding(endpoint, b.cert_hash, IIS_APP_ID))
                    pushed.append(endpoint)
            detail = "IIS restarted"
            if pushed:
                detail += f"; IIS re-created its HTTP.sys binding(s) {', '.join(pushed)}"
            return _fix(True, True, detail, 0)

    def delete_httpsys_binding(self, endpoint: str) -> dict[str, Any]:
        """netsh http delete sslcert ipport=|hostnameport=: not found is fine (idempotent)."""
        with self.lock:
            if (refused := self._not_elevated("netsh http delete sslcert")) is not None:
                return refused
            self._record("delete_httpsys_binding", endpoint=endpoint)
            s = self.state
            for table_name in ("ip_bindings", "sni_bindings"):
                table: list[HttpSysBinding] = getattr(s, table_name)
                kept = [b for b in table if b.endpoint.lower() != endpoint.lower()]
                if len(kept) != len(table):
                    setattr(s, table_name, kept)
                    return _fix(True, True, f"deleted the HTTP.sys binding {endpoint}", 0)
            return _fix(True, False, f"no HTTP.sys binding on {endpoint}", None)

    def delete_url_reservation(self, url: str) -> dict[str, Any]:
        """netsh http delete urlacl url=."""
        with self.lock:
            if (refused := self._not_elevated("netsh http delete urlacl")) is not None:
                return refused
            self._record("delete_url_reservation", url=url)
            s = self.state
            kept = [r for r in s.url_reservations if r["url"].lower() != url.lower()]
            if len(kept) == len(s.url_reservations):
                return _fix(True, False, f"no URL reservation {url}", None)
            s.url_reservations = kept
            return _fix(True, True, f"deleted the URL reservation {url}", 0)

    def bind_sstp_certificate(self, thumbprint: str) -> dict[str, Any]:
        """Set-RemoteAccess -SslCertificate, restart RemoteAccess, wait for a listener (DOMAIN 1.3).

        Mirrors the shipped script: a missing certificate or one without a private key is ok=false
        with nothing touched; already bound everywhere and listening is changed=false (no restart);
        otherwise restart, and ok=false when a wildcard binding still carries another certificate.
        """
        with self.lock:
            if (refused := self._not_elevated("Set-RemoteAccess and the restart")) is not None:
                return refused
            self._record("bind_sstp_certificate", thumbprint=thumbprint)
            s = self.state
            thumb = thumbprint.upper()
            cert = self.find_certificate(thumb)
            if cert is None:
                return _fix(False, False, f"certificate {thumb} is not in Cert:\\LocalMachine\\My")
            if not cert.has_private_key:
                return _fix(False, False, f"certificate {thumb} has no private key; SSTP cannot use it")
            if not self._bind_problems(cert):
                return _fix(True, False, f"certificate {thumb} is already bound and SSTP listens on port {s.listener_port}")
            notes = []
            if not (s.remote_access_thumbprint == thumb and s.sha256_hash in (None, cert.sha256)):
                s.sha256_hash = cert.sha256
                s.sha1_hash = cert.thumbprint
                s.remote_access_thumbprint = cert.thumbprint
                s.is_hash_configured_by_admin = True
                notes.append(f"Set-RemoteAccess -SslCertificate {thumb}")
            created = self._restart_remote_access()
            notes.append("RemoteAccess restarted")
            if created:
                notes.append(f"RRAS created the HTTP.sys binding(s) {', '.join(created)}")
            # The script's KB947027 fallback (netsh http add sslcert for a still-missing wildcard
            # binding) never has anything to add here: RRAS has created every missing one.
            problems = self._bind_problems(cert)
            if problems:
                notes.append("still wrong: " + "; ".join(problems))
                return _fix(False, True, "; ".join(notes))
            notes.append(f"certificate {thumb} bound; SSTP listens on port {s.listener_port}")
            return _fix(True, True, "; ".join(notes))

    def _bind_problems(self, cert: Certificate) -> list[str]:
        """What the script's Get-BindState would report for `cert`."""
        s = self.state
        problems = []
        if s.remote_access_thumbprint != cert.thumbprint:
            problems.append(f"Get-RemoteAccess reports certificate {s.remote_access_thumbprint}")
        if s.sha256_hash is not None and s.sha256_hash != cert.sha256:
            problems.append(f"SstpSvc SHA256CertificateHash is {s.sha256_hash}, expected {cert.sha256}")
        if s.use_https:
            for endpoint in (f"0.0.0.0:{s.listener_port}", f"[::]:{s.listener_port}"):
                binding = next((b for b in s.ip_bindings if b.endpoint == endpoint), None)
                if binding is None:
                    problems.append(f"no HTTP.sys binding on {endpoint}")
                elif binding.cert_hash != cert.thumbprint:
                    problems.append(
                        f"HTTP.sys binding {endpoint} carries certificate {binding.cert_hash} (AppId {binding.app_id}); "
                        "delete it first"
                    )
        if not self._service_running("RemoteAccess"):
            problems.append("RemoteAccess is not running")
        elif not (s.sstp_listening and s.foreign_listener is None):
            problems.append(f"nothing listens on port {s.listener_port}")
        return problems

    def restart_remoteaccess(self) -> dict[str, Any]:
        """Restart-Service RemoteAccess (start it when stopped); drops every VPN user."""
        with self.lock:
            if (refused := self._not_elevated("restarting RemoteAccess")) is not None:
                return refused
            self._record("restart_remoteaccess")
            created = self._restart_remote_access()
            detail = "RemoteAccess restarted"
            if created:
                detail += f"; RRAS created the HTTP.sys binding(s) {', '.join(created)}"
            if not self.listeners() or self.state.foreign_listener is not None:
                return _fix(False, True, detail + f"; but nothing listens on port {self.state.listener_port}", 1)
            return _fix(True, True, detail, 0)

    def _restart_remote_access(self) -> list[str]:
        """RemoteAccess (re)starts: users drop; SSTP binds HTTP.sys only where no binding exists.

        RemoteAccess's start time becomes the twin's clock; SstpSvc (which RemoteAccess needs) keeps its
        start time when it was already running and gets the clock's when it had to be started.
        """
        s = self.state
        now = self.clock()
        for name, default_start in (("RemoteAccess", "Automatic"), ("SstpSvc", "Manual")):
            current = s.services.get(name)
            if current is not None or name == "RemoteAccess":
                started = now
                if name != "RemoteAccess" and current is not None and current.status == "Running":
                    started = current.started_at
                s.services[name] = Service("Running", current.start_type if current else default_start, started)
        s.vpn_connections = 0
        created: list[str] = []
        cert = self._sstp_certificate()
        if s.use_https and cert is not None:
            for endpoint in (f"0.0.0.0:{s.listener_port}", f"[::]:{s.listener_port}"):
                if not any(b.endpoint == endpoint for b in s.ip_bindings):
                    s.ip_bindings.append(HttpSysBinding(endpoint, cert.thumbprint, SSTP_APP_ID))
                    created.append(endpoint)
        wildcard = [b for b in s.ip_bindings if b.endpoint in (f"0.0.0.0:{s.listener_port}", f"[::]:{s.listener_port}")]
        if not s.use_https:
            s.sstp_listening = s.foreign_listener is None
        else:
            s.sstp_listening = bool(wildcard) and cert is not None and cert.has_private_key and s.foreign_listener is None
        return created


def _fix(ok: bool, changed: bool, detail: str, exit_code: int | None = None) -> dict[str, Any]:
    return {"ok": ok, "changed": changed, "detail": detail, "exit_code": exit_code}


def _port_of(endpoint: str) -> int:
    try:
        return int(endpoint.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return -1


def _port_of_url(url: str) -> int:
    hostport = url.split("://", 1)[-1].split("/", 1)[0]
    if ":" not in hostport.rsplit("]", 1)[-1]:
        return 443 if url.lower().startswith("https") else 80
    return _port_of(hostport)


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def sstp_url(port: int = 443) -> str:
    return SSTP_URL_TEMPLATE.format(port=port)
