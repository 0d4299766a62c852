"""`Lab`: one loopback WinRM endpoint per emulated RRAS server, plus the inventory pointing at them."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import ssl
import tempfile
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from commands.errors import ConfigError
from commands.jea import DEFAULT_CONFIGURATION
from commands.lab import pki
from commands.lab.endpoint import EndpointFaults, RequestRecord, WinRMEndpoint
from commands.lab.jea import JeaMode, outdated_version
from commands.lab.runtime import ScriptFaults, ScriptRuntime
from commands.lab.scenarios import ServerSpec, build_state, load_scenario
from commands.lab.tlsview import TlsView
from commands.lab.twin import RrasTwin
from commands.server import ServerConfig

LAB_DOMAIN = "LAB"
LAB_USER = "sstp-bot"
LAB_USERNAME = f"{LAB_DOMAIN}\\{LAB_USER}"
# The lab's one password (NTLM_USER_FILE is process-wide, DESIGN 10). Not a secret: loopback only.
LAB_PASSWORD = "Lab-Passw0rd!"
WRONG_PASSWORD = "not-the-lab-password"
DEFAULT_SCENARIOS = ("fleet",)

# Each fault, and the error kind (DESIGN 7) a check of such a server reports; None: not an error.
FAULTS: dict[str, str | None] = {
    "refused": "unreachable",  # nothing listens on the server's port
    "wrong_password": "auth",  # the inventory holds a wrong password for this server
    "untrusted_tls": "tls",  # HTTPS with a certificate from a CA the client does not trust
    "slow": "timeout",  # every WS-Man answer comes after the configured operation timeout
    "trickle": "timeout",  # every WS-Man answer comes one byte at a time (each read is in time)
    "http_500": "bad_output",  # the Command request gets HTTP 500 with a non-XML body
    "wsman_fault": "bad_output",  # the Command request gets a WS-Man fault
    "script_error": "script_failed",  # every script ends with a terminating error before touching anything
    "bad_json": "bad_output",  # every script writes output that is not one JSON document
    "error_stream": "script_failed",  # every script writes a non-terminating error to the error stream
    "hang": "timeout",  # every script starts and never finishes; the inventory sets operation_timeout = 1
    "not_elevated": None,  # not elevated: the probe says so (NOT_ELEVATED), fix scripts get access denied
    "endpoint_outdated": None,  # JEA mode with a module older than the bot (ENDPOINT_OUTDATED, DESIGN 12)
}
SLOW_DELAY = 3.0
TRICKLE_SECONDS_PER_BYTE = 0.02
SLOW_OPERATION_TIMEOUT = 1.0

_user_file_lock = threading.Lock()


@cache
def _ntlm_user_line() -> str:
    """The lab user as a line of NTLM_USER_FILE, in its smbpasswd form `DOMAIN\\USER:UID:LM:NT:FLAGS:LCT`.

    pyspnego's acceptor reads the file at every authentication; from a `DOMAIN:USER:PASSWORD` line it
    derives the LM and NT hashes each time in pure Python (DES, MD4: most of a cold check's NTLM
    cost), from this form it only decodes them. The hashes are derived here once, with pyspnego's own
    functions (pinned 0.12.4), for the same domain and user: authentication accepts and refuses
    exactly as before. The plain password no longer sits in the temporary file either."""
    from spnego._ntlm_raw.crypto import lmowfv1, ntowfv1  # pinned in pyproject.toml

    lm, nt = lmowfv1(LAB_PASSWORD).hex().upper(), ntowfv1(LAB_PASSWORD).hex().upper()
    return f"{LAB_DOMAIN}\\{LAB_USER}:1000:{lm}:{nt}:[U]:LCT-00000000"


def ensure_ntlm_user_file() -> str:
    """Point NTLM_USER_FILE at a file holding the lab user (process-wide; set before any acceptor)."""
    with _user_file_lock:
        current = os.environ.get("NTLM_USER_FILE")
        line = _ntlm_user_line()
        if current and Path(current).is_file() and line in Path(current).read_text(encoding="utf-8").splitlines():
            return current
        fd, path = tempfile.mkstemp(prefix="sstp-bot-lab-users-", suffix=".txt")
        atexit.register(_remove_quietly, path)  # the lab's password file goes with the process
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(line + "\n")
        os.environ["NTLM_USER_FILE"] = path
        return path


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


@cache
def _tls_files(untrusted: bool) -> tuple[str, str, str]:
    """(cert PEM path, key PEM path, CA PEM path) of the WinRM HTTPS server certificate for 127.0.0.1."""
    ca = pki.LabCA.create("Untrusted Lab Root CA") if untrusted else pki.default_ca()
    now = datetime.now(UTC)
    issued = pki.issue_certificate(
        ca,
        common_name="localhost",
        dns_names=["localhost"],
        ip_addresses=["127.0.0.1", "::1"],
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=365),
        crl_url=None,
        ocsp_url=None,
        key_slot=2,
    )
    folder = Path(tempfile.mkdtemp(prefix="sstp-bot-lab-tls-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # it holds a private key
    cert_path = folder / "winrm.pem"
    key_path = folder / "winrm.key"
    ca_path = folder / "ca.pem"
    cert_path.write_bytes(issued.pem)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(issued.key_pem())
    ca_path.write_bytes(ca.pem)
    return str(cert_path), str(key_path), str(ca_path)


def lab_ca_bundle() -> str:
    """Path of a PEM file with the lab root CA (the `ca_bundle` of lab servers over HTTPS)."""
    return _tls_files(False)[2]


def _server_context(untrusted: bool) -> ssl.SSLContext:
    cert, key, _ = _tls_files(untrusted)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


@dataclass
class LabServer:
    """One emulated server: its twin, endpoint, faults and how to reach it."""

    name: str
    spec: ServerSpec
    twin: RrasTwin
    endpoint: WinRMEndpoint
    faults: frozenset[str]
    transport: str
    auth: str
    #: The server's SSTP port as VPN clients see it (DESIGN 11): a TLS listener on 127.0.0.1.
    tls_view: TlsView | None = None
    running: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    jea: JeaMode | None = None  # DESIGN 12: reached only through the SstpBot configuration

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self.endpoint.port

    @property
    def requests(self) -> list[RequestRecord]:
        return list(self.endpoint.requests)

    @property
    def public_name(self) -> str:
        return self.spec.public_name

    @property
    def client_endpoint(self) -> str | None:
        """host:port of the server's SSTP port for the client view (the inventory's `client_endpoint`)."""
        return self.tls_view.endpoint if self.tls_view is not None else None


class Lab:
    """Emulated RRAS servers on 127.0.0.1, one WinRM endpoint each (DESIGN 10).

    `scenarios` are names of `commands/lab/scenarios/*.toml` (fleet scenarios expand to several
    servers); `auth` is "ntlm" (NTLM/Negotiate, message encryption over HTTP) or "basic" (needs
    `tls=True`); `faults` maps a server name to fault names (see `FAULTS`); `latency` adds seconds to
    every WS-Man answer (benchmarks); `jea` puts servers behind the JEA endpoint `SstpBot` (True: all
    of them, or their names; the `endpoint_outdated` fault implies it, commands/lab/jea.py).
    """

    def __init__(
        self,
        scenarios: Iterable[str] | None = None,
        *,
        auth: str = "ntlm",
        tls: bool = False,
        faults: Mapping[str, Iterable[str]] | None = None,
        latency: float = 0.0,
        extra_servers: Iterable[tuple[str, str]] = (),
        jea: bool | Iterable[str] = False,
    ) -> None:
        if auth not in ("ntlm", "negotiate", "basic"):
            raise ConfigError(f"lab auth must be ntlm, negotiate or basic, not {auth!r}")
        if auth == "basic" and not tls:
            raise ConfigError("lab auth basic needs tls=True (Basic is never sent over plain HTTP)")
        ensure_ntlm_user_file()
        self.auth = auth
        self.tls = tls
        self.latency = latency
        self._jea: bool | frozenset[str] = jea if isinstance(jea, bool) else frozenset(jea)
        self.servers: dict[str, LabServer] = {}
        fault_map = {name: frozenset(v) for name, v in (faults or {}).items()}
        for name, values in fault_map.items():
            unknown = set(values) - set(FAULTS)
            if unknown:
                raise ConfigError(f"unknown lab fault(s) for {name}: {', '.join(sorted(unknown))}")
        specs: list[ServerSpec] = []
        for scenario_name in scenarios or DEFAULT_SCENARIOS:
            specs.extend(load_scenario(scenario_name).servers)
        for server_name, scenario_name in extra_servers:
            base = load_scenario(scenario_name).servers[0]
            specs.append(ServerSpec(server_name, base.scenario, base.description, base.public_name, base.data,
                                    base.expect, base.fixable))
        now = datetime.now(UTC)
        try:
            for spec in specs:
                name = spec.name
                n = 2
                while name in self.servers:
                    name = f"{spec.name}-{n}"
                    n += 1
                self._add(name, spec, fault_map.get(name, frozenset()), now)
            unknown_servers = (set(fault_map) | (set() if isinstance(self._jea, bool) else self._jea)) - set(self.servers)
            if unknown_servers:
                raise ConfigError(f"faults name unknown lab server(s): {', '.join(sorted(unknown_servers))}")
        except BaseException:
            self.stop()
            raise

    def _add(self, name: str, spec: ServerSpec, faults: frozenset[str], now: datetime) -> None:
        if spec.name != name:
            spec = ServerSpec(name, spec.scenario, spec.description, spec.public_name, spec.data, spec.expect,
                              spec.fixable, spec.fix_outcome)
        state = build_state(spec, now)
        if "not_elevated" in faults:
            state.is_admin = False
        twin = RrasTwin(state)
        runtime = ScriptRuntime(
            twin, ScriptFaults(
                terminating_error="script_error" in faults,
                bad_json="bad_json" in faults,
                error_stream="error_stream" in faults,
                hang="hang" in faults,
            )
        )
        jea = None
        if self._jea is True or (not isinstance(self._jea, bool) and name in self._jea) or "endpoint_outdated" in faults:
            jea = JeaMode(runtime)
            if "endpoint_outdated" in faults:
                jea.module_version = outdated_version()
        untrusted = "untrusted_tls" in faults
        tls = self.tls or untrusted
        tls_view = TlsView(twin)
        runtime.after_script = tls_view.refresh  # the SSTP port follows every script at once
        endpoint = WinRMEndpoint(
            name,
            runtime,
            username=LAB_USERNAME,
            password=LAB_PASSWORD,
            ssl_context=_server_context(untrusted) if tls else None,
            faults=EndpointFaults(
                http_500="http_500" in faults,
                wsman_fault="wsman_fault" in faults,
                delay=SLOW_DELAY if "slow" in faults else 0.0,
                trickle=TRICKLE_SECONDS_PER_BYTE if "trickle" in faults else 0.0,
            ),
            latency=self.latency,
            jea=jea,
        )
        server = LabServer(name, spec, twin, endpoint, faults, "https" if tls else "http", self.auth, jea=jea)
        self.servers[name] = server
        server.tls_view = tls_view
        tls_view.start()
        if "refused" in faults:
            # Keep the port number, close the socket: connection refused.
            endpoint.stop()
            server.running = False
        else:
            endpoint.start()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every endpoint (idempotent); in parallel, as each waits for its serve loop's poll."""
        running = [s for s in self.servers.values() if s.running]
        for server in running:
            server.running = False
        if running:
            with ThreadPoolExecutor(max_workers=min(32, len(running))) as pool:
                list(pool.map(lambda s: s.endpoint.stop(), running))
        views = [s.tls_view for s in self.servers.values() if s.tls_view is not None]
        if views:
            with ThreadPoolExecutor(max_workers=min(32, len(views))) as pool:
                list(pool.map(lambda v: v.stop(), views))

    def clear_logs(self) -> None:
        for server in self.servers.values():
            server.endpoint.clear_log()
            if server.jea is not None:
                server.jea.clear_log()

    def server_config(
        self, name: str, *, password_file: str | None = None, operation_timeout: float | None = None
    ) -> ServerConfig:
        """The inventory entry of one lab server (what `write_config` writes, as a ServerConfig)."""
        server = self.servers[name]
        slow = bool({"slow", "hang", "trickle"} & server.faults)
        return ServerConfig(
            name=name,
            host=server.host,
            public_name=server.public_name,
            client_endpoint=server.client_endpoint,
            group="lab",
            transport=server.transport,
            port=server.port,
            auth=self.auth,
            username=LAB_USERNAME,
            password_env="",
            password_file=password_file,
            verify_tls=True,
            ca_bundle=lab_ca_bundle() if server.transport == "https" else None,
            connect_timeout=2.0 if slow else 5.0,
            operation_timeout=SLOW_OPERATION_TIMEOUT if slow else (operation_timeout or 30.0),
            configuration_name=server.jea.configuration_name if server.jea else DEFAULT_CONFIGURATION,
        )

    def password_for(self, name: str) -> str:
        """The password the inventory holds for this server (wrong for the `wrong_password` fault)."""
        return WRONG_PASSWORD if "wrong_password" in self.servers[name].faults else LAB_PASSWORD

    def write_config(self, path: str | os.PathLike[str], *, database_url: str | None = None) -> Path:
        """Write an sstp-bot.toml pointing at the lab servers, with 0600 password files next to it.

        Every path in it is absolute, so the inventory works from any working directory."""
        path = Path(path).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        secrets: dict[str, Path] = {}
        for password, suffix in ((LAB_PASSWORD, "password"), (WRONG_PASSWORD, "wrong-password")):
            secret = path.with_name(f"{path.stem}.lab-{suffix}")
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(password + "\n")
            os.chmod(secret, 0o600)
            secrets[password] = secret
        db = database_url or f"sqlite:///{path.with_name(path.stem + '.db')}"
        lines = [
            "# Written by `sstp-bot lab`: emulated RRAS servers on 127.0.0.1.",
            "[slack]",
            'mode = "socket"',
            "approvers = []",
            "two_person_rule = false",
            "",
            "[database]",
            f"url = {_toml_str(db)}",
            "",
            "[defaults]",
            f"username = {_toml_str(LAB_USERNAME)}",
            'password_env = ""',
            f"password_file = {_toml_str(str(secrets[LAB_PASSWORD]))}",
            f"auth = {_toml_str(self.auth)}",
            "verify_tls = true",
            "connect_timeout = 5",
            "operation_timeout = 30",
            "",
        ]
        for name in self.servers:
            cfg = self.server_config(name)
            lines += [
                f"[servers.{_toml_key(name)}]",
                f"host = {_toml_str(cfg.host)}",
                f"port = {cfg.port}",
                f"transport = {_toml_str(cfg.transport)}",
                f"public_name = {_toml_str(cfg.public_name or '')}",
                'group = "lab"',
            ]
            if cfg.client_endpoint:
                lines.append(f"client_endpoint = {_toml_str(cfg.client_endpoint)}")
            if cfg.ca_bundle:
                lines.append(f"ca_bundle = {_toml_str(cfg.ca_bundle)}")
            if self.servers[name].jea is not None:
                lines.append(f"configuration_name = {_toml_str(cfg.configuration_name)}")
            if self.password_for(name) != LAB_PASSWORD:
                lines.append(f"password_file = {_toml_str(str(secrets[WRONG_PASSWORD]))}")
            if {"slow", "hang", "trickle"} & self.servers[name].faults:
                lines += [f"operation_timeout = {SLOW_OPERATION_TIMEOUT}", "connect_timeout = 2"]
            lines.append("")
        path.write_text("\n".join(lines), encoding="utf-8")
        return path


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_key(value: str) -> str:
    return value if value.replace("-", "").replace("_", "").isalnum() else _toml_str(value)
