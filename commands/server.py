"""A server of the inventory: how to reach it and what it is expected to look like."""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from commands.errors import ConfigError

SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")  # \Z: "vpn01\n" is not a name

TRANSPORTS = ("https", "http")
AUTH_METHODS = ("negotiate", "kerberos", "ntlm", "credssp", "basic")


def decode_text(data: bytes) -> str:
    """A text file as Windows tools write it: UTF-8, or UTF-8/UTF-16 with a byte-order mark (Notepad's
    "UTF-8 with BOM" and "Unicode"). Raises UnicodeDecodeError for anything else."""
    boms = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
    return data.decode(next((name for bom, name in boms if data.startswith(bom)), "utf-8"))


@dataclass(frozen=True)
class ServerConfig:
    """One `[servers.NAME]` table merged over `[defaults]`."""

    name: str
    host: str
    public_name: str | None = None
    group: str | None = None
    transport: str = "https"
    port: int = 5986
    auth: str = "negotiate"
    username: str | None = None
    password_env: str | None = "SSTP_BOT_WINRM_PASSWORD"
    password_file: str | None = None
    verify_tls: bool = True
    ca_bundle: str | None = None
    connect_timeout: float = 10.0
    operation_timeout: float = 120.0
    cert_expiry_warning_days: int = 30
    offload_sha256: str | None = None
    #: [2] The PSRP endpoint: "Microsoft.PowerShell" (administrator) or "SstpBot" (JEA, DESIGN 12).
    configuration_name: str = "Microsoft.PowerShell"
    #: [2] TLS and SSTP handshakes from the bot to the server after each probe (DESIGN 11).
    client_view: bool = True
    #: [2] host:port the client view connects to; None = host:SSTP listener port.
    client_endpoint: str | None = None
    #: [2] Minutes a warm runspace pool is kept between checks in `serve` (0 = off, DESIGN 13).
    keep_alive_minutes: float = 0.0
    #: [2] How long a RemoteAccess restart may take before the step fails (DESIGN 9).
    restart_timeout_seconds: float = 300.0

    def password(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The WinRM password: from the variable named by `password_env`, else from `password_file`.

        Raises ConfigError when a password is configured for but cannot be found. The message names the
        variable or file, never the value.
        """
        env = os.environ if environ is None else environ
        if self.password_env and env.get(self.password_env):
            return env[self.password_env]
        if self.password_file:
            try:
                data = Path(self.password_file).read_bytes()
            except OSError as exc:
                raise ConfigError(
                    f"server {self.name}: cannot read password_file {self.password_file}: {exc.strerror}"
                ) from None
            try:
                return decode_text(data).strip("\r\n")
            except UnicodeDecodeError:
                raise ConfigError(
                    f"server {self.name}: password_file {self.password_file} is not UTF-8 text; save it as UTF-8"
                ) from None
        if self.username is None:
            return None
        if self.password_env:
            raise ConfigError(
                f"server {self.name}: the WinRM password is missing: set the environment variable "
                f"{self.password_env}"
            )
        raise ConfigError(f"server {self.name}: username is set but neither password_env nor password_file")
