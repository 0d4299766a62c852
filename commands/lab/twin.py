"""The RRAS twin: a Python model of one Windows RRAS server, with Windows' semantics (DOMAIN.md).

`probe()` answers snapshot v1 (DESIGN 3) from the state; the fix methods change it the way the real
scripts change Windows. The semantics that matter for safety (docs/lab.md lists all of them):

- RRAS creates its HTTP.sys bindings on `0.0.0.0:PORT` and `[::]:PORT` *only where none exist*
  (DOMAIN 0, RRASBLOG-CHG1): binding a certificate leaves a foreign or stale binding in place.
- Restarting RemoteAccess drops every connected VPN user (DOMAIN 1.3).
- Removing an IIS config binding does not remove its HTTP.sys binding (DOMAIN 4); IIS re-asserts its
  remaining https bindings in HTTP.sys when it restarts (pessimistic model, docs/lab.md).
- Without elevation, every change is refused with access denied (netsh error 5; DOMAIN 6).
- RemoteAccess is a service with states and timings (DOMAIN 14): a stop passes through `StopPending`
  for `stop_seconds`, a start through `StartPending` for `start_seconds`; a start can fail (the
  service falls back to Stopped). SSTP registers its URL in HTTP.sys only while it runs.
"""

from __future__ import annotations

import base64
import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

SSTP_APP_ID = "{ba195980-cd49-458b-9e23-c84ee0adcd75}"
IIS_APP_ID = "{4dc3e181-e14b-4a21-b022-59fc669b0914}"
ADFS_APP_ID = "{5d89a20c-beab-4389-9447-324788eb944a}"
APP_IDS = {"sstp": SSTP_APP_ID, "iis": IIS_APP_ID, "adfs": ADFS_APP_ID}
SSTP_URL_TEMPLATE = "https://+:{port}/sra_{{BA195980-CD49-458b-9E23-C84EE0ADCD75}}/"
IIS_REGISTERED_URL_TEMPLATE = "HTTPS://*:{port}/"
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
    #: DOMAIN 14: a key that was deleted or whose ACL denies access still has HasPrivateKey true.
    #: None: as has_private_key says.
    private_key_usable: bool | None = None

    @property
    def key_usable(self) -> bool:
        return self.has_private_key and self.private_key_usable is not False

    def to_snapshot(self) -> dict[str, Any]:
        return {
            "thumbprint": self.thumbprint,
            "has_private_key": self.has_private_key,
            "private_key_usable": self.key_usable,
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
class RemoteAccessModel:
    """How the RemoteAccess service and its cmdlets behave on this server (DOMAIN 14)."""

    stop_seconds: float = 0.0  # how long a stop stays StopPending
    start_seconds: float = 0.0  # how long a start stays StartPending
    start_fails: bool = False  # a start ends Stopped again (e.g. a broken configuration)
    set_certificate_error: str | None = None  # Set-RemoteAccess throws with this message
    directaccess: bool = False  # DirectAccess enabled: Set-RemoteAccess's subject rule applies
    module_installed: bool = True  # the RemoteAccess PowerShell module (missing on some Server Core)


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
    remote_access: RemoteAccessModel = field(default_factory=RemoteAccessModel)


class RrasTwin:
    """One emulated RRAS server. Thread-safe: every operation holds the twin's lock."""

    def __init__(self, state: TwinState, *, clock: Any = None, monotonic: Callable[[], float] | None = None) -> None:
        self.state = state
        self.clock = clock or (lambda: datetime.now(UTC))
        #: Service timings run on this clock (seconds); tests may move it by hand.
        self.monotonic = monotonic or time.monotonic
        self.lock = threading.RLock()
        self.actions: list[tuple[str, dict[str, Any]]] = []  # fix scripts applied, in order
        #: A RemoteAccess transition under way: (the status it ends in, when, on `monotonic`).
        self._pending: tuple[str, float] | None = None
        #: Every RemoteAccess status the twin went through, in order (tests check the sequence).
        self.remoteaccess_history: list[str] = []

    # --- reading ----------------------------------------------------------------------------------

    def plan_actions(self) -> list[str]:
        """The plan steps (DESIGN 5) the primitives applied so far carry out, in order.

        `set_sstp_certificate` and what follows it (the restart, re-added bindings) is one
        `bind_sstp_certificate`; `control_remoteaccess` calls on their own are one `restart_remoteaccess`
        (DESIGN 9 [2]). Tests compare this with a plan's steps."""
        with self.lock:
            names = [name for name, _ in self.actions]
        steps: list[str] = []
        for name in names:
            if name == "set_sstp_certificate":
                steps.append("bind_sstp_certificate")
            elif name in ("control_remoteaccess", "add_sstp_httpsys_binding"):
                if not steps or steps[-1] not in ("bind_sstp_certificate", "restart_remoteaccess"):
                    steps.append("restart_remoteaccess")
            else:
                steps.append(name)
        return steps

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

    def _http_sys_listening(self) -> bool:
        """HTTP.sys holds the SSTP port: SSTP listens while RemoteAccess runs, or IIS has a binding on it."""
        s = self.state
        iis_listening = (
            s.iis_installed
            and self._service_running("W3SVC")
            and any(b.port == s.listener_port for b in s.iis_bindings)
        )
        sstp = s.sstp_listening and self._service_running("RemoteAccess")
        return bool(sstp or iis_listening)

    def listening(self) -> bool:
        """Something accepts TCP on the SSTP port: `listeners()` is not empty. Cheaper than building
        that list (the lab's TLS view asks every 50 ms)."""
        with self.lock:
            return self.state.foreign_listener is not None or self._http_sys_listening()

    def listeners(self) -> list[dict[str, Any]]:
        s = self.state
        if s.foreign_listener is not None:
            fl = s.foreign_listener
            return [{"local_address": fl.local_address, "port": s.listener_port, "pid": fl.pid, "process": fl.process}]
        if self._http_sys_listening():
            return [
                {"local_address": "0.0.0.0", "port": s.listener_port, "pid": 4, "process": "System"},
                {"local_address": "::", "port": s.listener_port, "pid": 4, "process": "System"},
            ]
        return []

    def registered_urls(self) -> list[str] | None:
        """`netsh http show servicestate view=requestq` URLs on the SSTP port (DOMAIN 14), upper case.

        SSTP's URL is registered while RemoteAccess runs and SSTP listens; IIS registers the weak
        wildcard `HTTPS://*:PORT/` for its https bindings while W3SVC runs (DOMAIN 5). Null with TLS
        offloaded (DESIGN 3 [2])."""
        s = self.state
        if not s.use_https:
            return None
        urls = []
        if s.sstp_listening and self._service_running("RemoteAccess") and s.foreign_listener is None:
            urls.append(sstp_url(s.listener_port).upper())
        if s.iis_installed and self._service_running("W3SVC") and any(b.port == s.listener_port for b in s.iis_bindings):
            urls.append(IIS_REGISTERED_URL_TEMPLATE.format(port=s.listener_port))
        return urls

    def port_state(self) -> dict[str, Any]:
        """What a client can tell about the SSTP port right now, read without a probe (the lab's TLS
        view polls this): listener port, listeners, registered URLs and the port's HTTP.sys bindings."""
        with self.lock:
            self._advance()
            s = self.state
            port = s.listener_port
            return {
                "listener_port": port,
                "listeners": self.listeners(),
                "registered_urls": self.registered_urls(),
                "sstp_listening": s.sstp_listening and self._service_running("RemoteAccess"),
                "ip_bindings": [(b.endpoint, b.cert_hash) for b in s.ip_bindings if _port_of(b.endpoint) == port],
                "sni_bindings": [(b.endpoint, b.cert_hash) for b in s.sni_bindings if _port_of(b.endpoint) == port],
            }

    def probe(self, event_hours: int = 24, max_events: int = 100) -> dict[str, Any]:
        """Snapshot v1 (DESIGN 3) of the current state."""
        with self.lock:
            self._advance()
            s = self.state
            now = self.clock()
            port = s.listener_port
            since = now - timedelta(hours=event_hours)
            events = [e for e in s.events if _parse_time(e["time"]) >= since]
            # DOMAIN 14: at most max_events per provider (newest first), the rest counted.
            kept: list[dict[str, Any]] = []
            omitted = 0
            for provider in sorted({str(e["provider"]) for e in events}):
                mine = sorted((e for e in events if e["provider"] == provider), key=lambda e: e["time"], reverse=True)
                kept.extend(mine[:max_events])
                omitted += max(0, len(mine) - max_events)
            events = sorted(kept, key=lambda e: e["time"])
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
                    "remote_access": {
                        "vpn_status": s.vpn_status,
                        "thumbprint": s.remote_access_thumbprint,
                        "directaccess": s.remote_access.directaccess,
                    },
                },
                "http_sys": {
                    "ip_bindings": [b.to_snapshot() for b in s.ip_bindings if _port_of(b.endpoint) == port],
                    "sni_bindings": [b.to_snapshot() for b in s.sni_bindings if _port_of(b.endpoint) == port],
                    "url_reservations": [
                        dict(r) for r in s.url_reservations if _port_of_url(r["url"]) == port
                    ],
                    "ccs_bindings": [],
                    "registered_urls": self.registered_urls(),
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
                "events_omitted": omitted,
                "endpoint": None,
                "probe_errors": [dict(e) for e in s.probe_errors],
            }

    # --- fix scripts (DESIGN 5, 9) ----------------------------------------------------------------

    def _not_elevated(self, what: str) -> dict[str, Any] | None:
        """The shipped scripts check elevation first and answer ok=false without touching anything
        (netsh/appcmd would fail with access denied, error 5; DOMAIN 9)."""
        self._advance()
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

    def add_sstp_httpsys_binding(self, endpoint: str, thumbprint: str) -> dict[str, Any]:
        """netsh http add sslcert ipport=... appid={SSTP} (KB947027); refuses an endpoint already bound."""
        with self.lock:
            self._advance()
            if (refused := self._not_elevated("netsh http add sslcert")) is not None:
                return refused
            self._record("add_sstp_httpsys_binding", endpoint=endpoint, thumbprint=thumbprint)
            s = self.state
            if any(b.endpoint.lower() == endpoint.lower() for b in s.ip_bindings):
                return _fix(False, False, f"{endpoint} already has an HTTP.sys binding; it is not replaced")
            if self.find_certificate(thumbprint) is None:
                return _fix(False, False, f"certificate {thumbprint} is not in Cert:\\LocalMachine\\My")
            s.ip_bindings.append(HttpSysBinding(endpoint, thumbprint.upper(), SSTP_APP_ID))
            return _fix(True, True, f"added the SSTP binding {endpoint} with certificate {thumbprint}", 0)

    def set_sstp_certificate(self, thumbprint: str) -> dict[str, Any]:
        """Set-RemoteAccess -SslCertificate: the configuration only; nothing restarts (DOMAIN 1.3)."""
        with self.lock:
            self._advance()
            if (refused := self._not_elevated("Set-RemoteAccess")) is not None:
                return refused
            self._record("set_sstp_certificate", thumbprint=thumbprint)
            s = self.state
            model = s.remote_access
            thumb = thumbprint.upper()
            cert = self.find_certificate(thumb)
            if not model.module_installed:
                return _fix(False, False, "the RemoteAccess PowerShell module is not installed")
            if cert is None:
                return _fix(False, False, f"certificate {thumb} is not in Cert:\\LocalMachine\\My")
            if not cert.has_private_key:
                return _fix(False, False, f"certificate {thumb} has no private key; SSTP cannot use it")
            if s.remote_access_thumbprint == thumb and s.sha256_hash in (None, cert.sha256):
                return _fix(True, False, f"SSTP is already configured with certificate {thumb}")
            if model.directaccess:  # after the comparison, as set_sstp_certificate.ps1 does
                return _fix(False, False, "DirectAccess is enabled on this server: its certificate is tied to the "
                            "DirectAccess settings")
            if model.set_certificate_error:
                return _fix(False, False, f"Set-RemoteAccess failed: {model.set_certificate_error}")
            s.sha256_hash = cert.sha256
            s.sha1_hash = cert.thumbprint
            s.remote_access_thumbprint = cert.thumbprint
            s.is_hash_configured_by_admin = True
            return _fix(True, True, f"Set-RemoteAccess -SslCertificate {thumb}; RemoteAccess must be restarted to use it")

    def control_remoteaccess(self, action: str) -> dict[str, Any]:
        """ServiceController.Start()/.Stop(): returns at once; the status passes through *Pending."""
        with self.lock:
            self._advance()
            if (refused := self._not_elevated("controlling RemoteAccess")) is not None:
                return {**refused, "status": self._ra_status(), "sstp_registered": None}
            self._record("control_remoteaccess", Action=action)
            before = self._ra_status()
            model = self.state.remote_access
            if action == "Stop":
                if before in ("Stopped", "StopPending"):
                    result = _fix(True, False, f"RemoteAccess is already {before}")
                else:
                    self._set_ra_status("StopPending")
                    # Stopping drops every VPN user and SSTP's URL at once (DOMAIN 1.3).
                    self.state.vpn_connections = 0
                    self.state.sstp_listening = False
                    self._pending = ("Stopped", self.monotonic() + model.stop_seconds)
                    self._advance()
                    result = _fix(True, True, f"asked RemoteAccess to stop; it is {self._ra_status()}")
            else:
                if before in ("Running", "StartPending"):
                    result = _fix(True, False, f"RemoteAccess is already {before}")
                elif before == "StopPending":
                    result = _fix(False, False, "RemoteAccess is still stopping; wait for Stopped before starting it")
                else:
                    self._set_ra_status("StartPending")
                    self._pending = ("Running", self.monotonic() + model.start_seconds)
                    self._advance()
                    result = _fix(True, True, f"asked RemoteAccess to start; it is {self._ra_status()}")
            return {**result, "status": self._ra_status(), "sstp_registered": None}

    def remoteaccess_state(self) -> dict[str, Any]:
        """RemoteAccess's status and whether SSTP's URL is registered in HTTP.sys (read only)."""
        with self.lock:
            self._advance()
            status = self._ra_status()
            urls = self.registered_urls()
            registered = None if urls is None else sstp_url(self.state.listener_port).upper() in urls
            detail = f"RemoteAccess is {status}; SSTP URL registered: {registered}"
            return {**_fix(True, False, detail), "status": status, "sstp_registered": registered}

    # --- the RemoteAccess service model ----------------------------------------------------------

    def _ra_status(self) -> str:
        service = self.state.services.get("RemoteAccess")
        return "Stopped" if service is None else service.status

    def _set_ra_status(self, status: str) -> None:
        current = self.state.services.get("RemoteAccess")
        start_type = current.start_type if current is not None else "Automatic"
        started = current.started_at if current is not None and status != "Stopped" else None
        self.state.services["RemoteAccess"] = Service(status, start_type, started)
        self.remoteaccess_history.append(status)

    def _advance(self) -> None:
        """Apply a RemoteAccess transition whose time has come (caller holds the lock)."""
        if self._pending is None:
            return
        target, due = self._pending
        if self.monotonic() < due:
            return
        self._pending = None
        if target == "Stopped":
            self._set_ra_status("Stopped")
            self.state.sstp_listening = False
            self.state.vpn_connections = 0
        elif self.state.remote_access.start_fails:
            self._set_ra_status("Stopped")
            self.state.sstp_listening = False
        else:
            self._start_remote_access()
            self.remoteaccess_history.append("Running")

    def _start_remote_access(self) -> list[str]:
        """RemoteAccess reaches Running: SSTP binds HTTP.sys only where no binding exists.

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
            s.sstp_listening = bool(wildcard) and cert is not None and cert.key_usable and s.foreign_listener is None
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
