"""Snapshot v1 (DESIGN 3): the probe's JSON, validated into typed, frozen dataclasses.

`parse_snapshot` accepts the probe output as text, bytes or an already decoded mapping, and either
returns a `Snapshot` or raises `SnapshotError(field, message)` naming the offending field path
(`http_sys.ip_bindings[1].cert_hash`). It never lets a KeyError or TypeError escape.

Decisions where DESIGN leaves room:
- Every top-level key must be present (absent data is `null`, never omitted). A section may be `null`
  when the probe could not read it; the dataclass then holds `None` and diagnosis skips the checks
  that need it (the probe records the reason in `probe_errors`).
- Inside records, the keys the engine relies on are required (`endpoint`, `cert_hash`, `app_id`,
  `thumbprint`, `der`, ...); purely descriptive ones (`store`, `ctl_store`, `sddl`, `friendly_name`,
  `os_caption`, `process`, `message`, ...) may be missing and default to `null`.
- Hex values are normalised to upper case without separators (the invisible U+200E that certmgr
  copy/paste adds is dropped, DOMAIN 11); a value that is not hex is an error. AppIds are normalised
  to lower case with braces.
- A certificate whose `der` is not base64 makes the whole snapshot invalid (the probe output is
  corrupt). A certificate whose DER decodes but that `cryptography` cannot parse is kept, with
  `info=None` and `error` set: Windows accepts certificates that a strict parser refuses, and one odd
  certificate in LocalMachine\\My must not make the server impossible to check. Its hashes are still
  computed from the DER, so SSTP certificate resolution keeps working.
- Inputs larger than 10 MB are refused before any parsing.
- `services.<name>.started_at` is optional (probes older than the key omit it): absent or null means
  unknown; a value that is not an ISO 8601 time is an error like any other bad time.
- The second release's additions (DESIGN 3 [2]: `http_sys.registered_urls`,
  `certificates[].private_key_usable`, `sstp.remote_access.directaccess`, `events_omitted`,
  `endpoint`, `client_view`) are optional: absent reads as None and the snapshot is still v1. When
  present they are validated like the rest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from commands.certs import CertificateInfo, analyse_certificate
from commands.errors import SnapshotError

SCHEMA = "sstp-bot/snapshot/v1"
MAX_SNAPSHOT_BYTES = 10 * 1024 * 1024
DEFAULT_SSTP_PORT = 443

_HEX_RE = re.compile(r"^[0-9A-F]*$")
_GUID_RE = re.compile(r"^\{?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\}?$")
_ENDPOINT_RE = re.compile(r"^(.+):(\d{1,5})$")

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class Host:
    computer_name: str | None
    os_caption: str | None
    os_build: str | None
    ps_version: str | None
    is_admin: bool | None


@dataclass(frozen=True)
class ServiceState:
    status: str | None
    start_type: str | None
    # Optional in v1 (added later): when the service's process started, UTC; None when stopped or unknown.
    started_at: datetime | None = None

    @property
    def running(self) -> bool:
        return (self.status or "").lower() == "running"


@dataclass(frozen=True)
class RemoteAccessInfo:
    vpn_status: str | None
    thumbprint: str | None
    directaccess: bool | None = None  # [2] DirectAccess enabled on the server; None when unknown


@dataclass(frozen=True)
class SstpConfig:
    sha256_hash: str | None
    sha1_hash: str | None
    use_https: bool | None
    is_hash_configured_by_admin: bool | None
    listener_port: int | None
    remote_access: RemoteAccessInfo | None

    @property
    def port(self) -> int:
        """The SSTP listener port; 443 when the registry value is absent."""
        return self.listener_port if self.listener_port is not None else DEFAULT_SSTP_PORT

    @property
    def https(self) -> bool:
        """True unless TLS is offloaded (`UseHttps` = 0). An unknown value means the normal HTTPS mode."""
        return self.use_https is not False


@dataclass(frozen=True)
class SslBinding:
    """One HTTP.sys SSL binding (`netsh http show sslcert`): IP or SNI endpoint, certificate, owner."""

    endpoint: str
    cert_hash: str | None
    app_id: str | None
    store: str | None
    ctl_store: str | None

    @property
    def host(self) -> str:
        return _split_endpoint(self.endpoint)[0]

    @property
    def port(self) -> int | None:
        return _split_endpoint(self.endpoint)[1]


@dataclass(frozen=True)
class UrlReservation:
    url: str
    sddl: str | None

    @property
    def port(self) -> int | None:
        return url_port(self.url)


@dataclass(frozen=True)
class HttpSys:
    ip_bindings: tuple[SslBinding, ...] | None
    sni_bindings: tuple[SslBinding, ...] | None
    url_reservations: tuple[UrlReservation, ...] | None
    # [2] URLs registered in HTTP.sys on the SSTP port, upper case (`netsh http show servicestate`).
    registered_urls: tuple[str, ...] | None = None


@dataclass(frozen=True)
class IisBinding:
    site: str
    binding_information: str
    cert_hash: str | None
    ssl_flags: int | None

    @property
    def port(self) -> int | None:
        parts = self.binding_information.rsplit(":", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        return int(parts[1])

    @property
    def ip(self) -> str:
        return self.binding_information.rsplit(":", 2)[0]

    @property
    def host_header(self) -> str:
        parts = self.binding_information.rsplit(":", 2)
        return parts[2] if len(parts) == 3 else ""


@dataclass(frozen=True)
class Iis:
    installed: bool | None
    https_bindings: tuple[IisBinding, ...] | None


@dataclass(frozen=True)
class Listener:
    local_address: str | None
    port: int
    pid: int | None
    process: str | None


@dataclass(frozen=True)
class StoredCertificate:
    """A certificate of LocalMachine\\My as the probe reported it, with its analysis (or why none)."""

    thumbprint: str  # SHA-1 of the DER when there is one, else the probe's value
    sha256: str | None
    has_private_key: bool
    friendly_name: str | None
    der: bytes | None = field(repr=False)
    info: CertificateInfo | None = field(repr=False)
    error: str | None = None
    private_key_usable: bool | None = None  # [2] the probe could open the private key; None: not tried

    @property
    def key_usable(self) -> bool:
        """A private key Windows has and (when the probe could tell) can open."""
        return self.has_private_key and self.private_key_usable is not False


@dataclass(frozen=True)
class Event:
    provider: str
    id: int
    time: datetime
    message: str | None


@dataclass(frozen=True)
class ProbeError:
    section: str
    message: str


@dataclass(frozen=True)
class EndpointInfo:
    """[2] The PSRP endpoint the probe ran in (DESIGN 12)."""

    configuration_name: str | None
    module_version: str | None
    language_mode: str | None


@dataclass(frozen=True)
class ClientError:
    kind: str  # "unreachable", "tls", "timeout" (DESIGN 11)
    message: str


@dataclass(frozen=True)
class Handshake:
    """[2] One TLS handshake of the client view, with or without SNI (DESIGN 11)."""

    sni: str | None
    ok: bool
    error: ClientError | None
    tls_version: str | None
    cert_sha256: str | None
    cert_sha1: str | None
    der: bytes | None = field(repr=False, default=None)


@dataclass(frozen=True)
class SstpRequest:
    """[2] The `SSTP_DUPLEX_POST` request of the client view (DESIGN 11)."""

    sni: str | None
    ok: bool
    http_status: int | None
    error: ClientError | None


@dataclass(frozen=True)
class ClientView:
    """[2] What a VPN client sees, collected by the bot itself after the probe (DESIGN 11)."""

    endpoint: str | None
    collected_at: datetime | None
    handshakes: tuple[Handshake, ...]
    sstp: SstpRequest | None


@dataclass(frozen=True)
class Snapshot:
    """A validated snapshot v1. `raw` keeps the decoded JSON object as received."""

    schema: str
    collected_at: datetime
    host: Host
    services: Mapping[str, ServiceState | None] | None
    sstp: SstpConfig | None
    http_sys: HttpSys | None
    iis: Iis | None
    listeners: tuple[Listener, ...] | None
    certificates: tuple[StoredCertificate, ...] | None
    vpn_connections: int | None
    events: tuple[Event, ...] | None
    probe_errors: tuple[ProbeError, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    events_omitted: int | None = None  # [2] matching events left out by the probe's cap
    endpoint: EndpointInfo | None = None  # [2]
    client_view: ClientView | None = None  # [2]

    def service(self, name: str) -> ServiceState | None:
        """A service's state by name (case-insensitive), or None when absent or unknown."""
        if not self.services:
            return None
        for key, value in self.services.items():
            if key.lower() == name.lower():
                return value
        return None

    @property
    def port(self) -> int:
        return self.sstp.port if self.sstp is not None else DEFAULT_SSTP_PORT


# ---------------------------------------------------------------------------------------------------
# Helpers shared with diagnosis


def normalise_hex(value: str) -> str:
    return re.sub(r"[\s\u200e\u200f:-]", "", value).upper()


def normalise_guid(value: str) -> str:
    """`{xxxxxxxx-...}` in lower case; values that are not GUIDs are returned stripped and lower-cased."""
    text = value.strip().lower()
    m = _GUID_RE.match(text)
    return "{" + m.group(1) + "}" if m else text


def _split_endpoint(endpoint: str) -> tuple[str, int | None]:
    m = _ENDPOINT_RE.match(endpoint)
    if not m:
        return endpoint, None
    return m.group(1), int(m.group(2))


def url_port(url: str) -> int | None:
    """The port of an HTTP.sys URL prefix such as `https://+:443/sra_{...}/` (scheme default if none)."""
    m = re.match(r"^(https?)://(\[[^\]]*\]|[^/:]*)(?::(\d{1,5}))?(/.*)?$", url.strip(), re.IGNORECASE)
    if not m:
        return None
    if m.group(3):
        return int(m.group(3))
    return 443 if m.group(1).lower() == "https" else 80


# ---------------------------------------------------------------------------------------------------
# Parsing


class _Reader:
    """Typed access to one JSON object, raising SnapshotError with the field path."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise SnapshotError(path or "snapshot", f"expected an object, got {_kind(data)}")
        self.data = data
        self.path = path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, *, required: bool = True) -> Any:
        if key not in self.data:
            if required:
                raise SnapshotError(self.at(key), "missing (absent data must be null, not omitted)")
            return None
        return self.data[key]

    def str_(self, key: str, *, required: bool = True, nullable: bool = True) -> str | None:
        value = self.get(key, required=required)
        if value is None:
            if not nullable:
                raise SnapshotError(self.at(key), "must not be null")
            return None
        if not isinstance(value, str):
            raise SnapshotError(self.at(key), f"expected a string, got {_kind(value)}")
        return value

    def bool_(self, key: str, *, required: bool = True) -> bool | None:
        value = self.get(key, required=required)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise SnapshotError(self.at(key), f"expected true or false, got {_kind(value)}")
        return value

    def int_(self, key: str, *, required: bool = True, minimum: int | None = None, maximum: int | None = None) -> int | None:
        value = self.get(key, required=required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise SnapshotError(self.at(key), f"expected a whole number, got {_kind(value)}")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise SnapshotError(self.at(key), f"{value} is out of range")
        return value

    def hex_(self, key: str, *, required: bool = True) -> str | None:
        value = self.str_(key, required=required)
        if value is None:
            return None
        clean = normalise_hex(value)
        if not clean:
            return None
        if not _HEX_RE.match(clean):
            raise SnapshotError(self.at(key), f"{value!r} is not a hexadecimal hash")
        return clean

    def obj(self, key: str, *, required: bool = True) -> _Reader | None:
        value = self.get(key, required=required)
        if value is None:
            return None
        return _Reader(value, self.at(key))

    def list_(self, key: str, item: Callable[[Any, str], T], *, required: bool = True) -> tuple[T, ...] | None:
        value = self.get(key, required=required)
        if value is None:
            return None
        if not isinstance(value, list):
            raise SnapshotError(self.at(key), f"expected a list, got {_kind(value)}")
        return tuple(item(entry, f"{self.at(key)}[{i}]") for i, entry in enumerate(value))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _time(value: Any, path: str) -> datetime:
    if not isinstance(value, str):
        raise SnapshotError(path, f"expected an ISO 8601 time string, got {_kind(value)}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # .NET writes up to 7 fractional digits; Python accepts at most 6.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SnapshotError(path, f"{value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _host(data: Any, path: str) -> Host:
    r = _Reader(data, path)
    return Host(
        computer_name=r.str_("computer_name"),
        os_caption=r.str_("os_caption", required=False),
        os_build=_scalar_text(r, "os_build"),
        ps_version=_scalar_text(r, "ps_version"),
        is_admin=r.bool_("is_admin"),
    )


def _scalar_text(r: _Reader, key: str) -> str | None:
    value = r.get(key, required=False)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SnapshotError(r.at(key), f"expected a string, got {_kind(value)}")
    return str(value)


# ConvertTo-Json writes .NET enums as numbers unless the probe converts them to text first.
_SERVICE_STATUS = {1: "Stopped", 2: "StartPending", 3: "StopPending", 4: "Running", 5: "ContinuePending",
                   6: "PausePending", 7: "Paused"}
_START_TYPE = {0: "Boot", 1: "System", 2: "Automatic", 3: "Manual", 4: "Disabled"}


def _enum_text(r: _Reader, key: str, names: Mapping[int, str], *, required: bool) -> str | None:
    value = r.get(key, required=required)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return names.get(value, str(value))
    if not isinstance(value, str):
        raise SnapshotError(r.at(key), f"expected a string, got {_kind(value)}")
    return value


def _service(data: Any, path: str) -> ServiceState | None:
    if data is None:
        return None
    r = _Reader(data, path)
    started = r.get("started_at", required=False)
    return ServiceState(status=_enum_text(r, "status", _SERVICE_STATUS, required=True),
                        start_type=_enum_text(r, "start_type", _START_TYPE, required=False),
                        started_at=None if started is None else _time(started, r.at("started_at")))


def _services(r: _Reader) -> Mapping[str, ServiceState | None] | None:
    section = r.obj("services")
    if section is None:
        return None
    return {str(name): _service(value, section.at(str(name))) for name, value in section.data.items()}


def _sstp(r: _Reader) -> SstpConfig | None:
    s = r.obj("sstp")
    if s is None:
        return None
    ra = s.obj("remote_access", required=False)
    remote_access = (
        None
        if ra is None
        else RemoteAccessInfo(
            vpn_status=_scalar_text(ra, "vpn_status"),
            thumbprint=ra.hex_("thumbprint"),
            directaccess=ra.bool_("directaccess", required=False),
        )
    )
    return SstpConfig(
        sha256_hash=s.hex_("sha256_hash"),
        sha1_hash=s.hex_("sha1_hash", required=False),
        use_https=s.bool_("use_https"),
        is_hash_configured_by_admin=s.bool_("is_hash_configured_by_admin", required=False),
        listener_port=s.int_("listener_port", minimum=1, maximum=65535),
        remote_access=remote_access,
    )


def _binding(data: Any, path: str) -> SslBinding:
    r = _Reader(data, path)
    endpoint = r.str_("endpoint", nullable=False)
    assert endpoint is not None
    endpoint = endpoint.strip()
    if _split_endpoint(endpoint)[1] is None:
        raise SnapshotError(r.at("endpoint"), f"{endpoint!r} is not IP:port, [IPv6]:port or hostname:port")
    app_id = r.str_("app_id")
    return SslBinding(
        endpoint=endpoint,
        cert_hash=r.hex_("cert_hash"),
        app_id=normalise_guid(app_id) if app_id else None,
        store=r.str_("store", required=False),
        ctl_store=r.str_("ctl_store", required=False),
    )


def _reservation(data: Any, path: str) -> UrlReservation:
    r = _Reader(data, path)
    url = r.str_("url", nullable=False)
    assert url is not None
    return UrlReservation(url=url.strip(), sddl=r.str_("sddl", required=False))


def _http_sys(r: _Reader) -> HttpSys | None:
    h = r.obj("http_sys")
    if h is None:
        return None
    return HttpSys(
        ip_bindings=h.list_("ip_bindings", _binding),
        sni_bindings=h.list_("sni_bindings", _binding),
        url_reservations=h.list_("url_reservations", _reservation),
        registered_urls=h.list_("registered_urls", _text, required=False),
    )


def _text(data: Any, path: str) -> str:
    if not isinstance(data, str):
        raise SnapshotError(path, f"expected a string, got {_kind(data)}")
    return data.strip()


def _iis_binding(data: Any, path: str) -> IisBinding:
    r = _Reader(data, path)
    site = r.str_("site", nullable=False)
    info = r.str_("binding_information", nullable=False)
    assert site is not None and info is not None
    return IisBinding(site=site, binding_information=info.strip(), cert_hash=r.hex_("cert_hash"),
                      ssl_flags=r.int_("ssl_flags", required=False))


def _iis(r: _Reader) -> Iis | None:
    i = r.obj("iis")
    if i is None:
        return None
    return Iis(installed=i.bool_("installed"), https_bindings=i.list_("https_bindings", _iis_binding))


def _listener(data: Any, path: str) -> Listener:
    r = _Reader(data, path)
    port = r.int_("port", minimum=0, maximum=65535)
    if port is None:
        raise SnapshotError(r.at("port"), "must not be null")
    return Listener(
        local_address=r.str_("local_address", required=False),
        port=port,
        pid=r.int_("pid", required=False, minimum=0),
        process=r.str_("process", required=False),
    )


def _certificate(data: Any, path: str) -> StoredCertificate:
    r = _Reader(data, path)
    reported = r.hex_("thumbprint")
    has_key = r.bool_("has_private_key")
    friendly = r.str_("friendly_name", required=False)
    key_usable = r.bool_("private_key_usable", required=False)
    der = _der(r, "der")
    if der is None:
        if reported is None:
            raise SnapshotError(path, "a certificate needs its DER or at least its thumbprint")
        return StoredCertificate(
            reported, None, bool(has_key), friendly, None, None, "the probe sent no DER", private_key_usable=key_usable
        )
    thumbprint = hashlib.sha1(der).hexdigest().upper()
    sha256 = hashlib.sha256(der).hexdigest().upper()
    try:
        info: CertificateInfo | None = analyse_certificate(der, has_private_key=bool(has_key), friendly_name=friendly or "")
        error = None
    except ValueError as exc:
        info, error = None, f"cannot be parsed as X.509: {exc}"
    return StoredCertificate(thumbprint, sha256, bool(has_key), friendly, der, info, error, private_key_usable=key_usable)


def _der(r: _Reader, key: str) -> bytes | None:
    """Base64 DER (PEM armour tolerated: a hand-made snapshot may paste a .cer file); None when empty."""
    text = r.str_(key, required=key == "der")
    if not text:
        return None
    body = re.sub(r"-----(BEGIN|END) [A-Z0-9 ]+-----", "", text)
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SnapshotError(r.at(key), "is not valid base64") from None
    return der or None


def _endpoint_info(r: _Reader) -> EndpointInfo | None:
    e = r.obj("endpoint", required=False)
    if e is None:
        return None
    return EndpointInfo(
        configuration_name=e.str_("configuration_name", required=False),
        module_version=_scalar_text(e, "module_version"),
        language_mode=e.str_("language_mode", required=False),
    )


def _client_error(r: _Reader) -> ClientError | None:
    e = r.obj("error", required=False)
    if e is None:
        return None
    return ClientError(kind=str(e.str_("kind", required=False) or "unknown"), message=str(e.str_("message", required=False) or ""))


def _handshake(data: Any, path: str) -> Handshake:
    r = _Reader(data, path)
    return Handshake(
        sni=r.str_("sni", required=False),
        ok=bool(r.bool_("ok")),
        error=_client_error(r),
        tls_version=r.str_("tls_version", required=False),
        cert_sha256=r.hex_("cert_sha256", required=False),
        cert_sha1=r.hex_("cert_sha1", required=False),
        der=_der_optional(r),
    )


def _der_optional(r: _Reader) -> bytes | None:
    return None if r.get("der", required=False) is None else _der(r, "der")


def _sstp_request(r: _Reader) -> SstpRequest | None:
    s = r.obj("sstp", required=False)
    if s is None:
        return None
    return SstpRequest(
        sni=s.str_("sni", required=False),
        ok=bool(s.bool_("ok")),
        http_status=s.int_("http_status", required=False, minimum=0, maximum=999),
        error=_client_error(s),
    )


def _client_view(r: _Reader) -> ClientView | None:
    c = r.obj("client_view", required=False)
    if c is None:
        return None
    collected = c.get("collected_at", required=False)
    return ClientView(
        endpoint=c.str_("endpoint", required=False),
        collected_at=None if collected is None else _time(collected, c.at("collected_at")),
        handshakes=c.list_("handshakes", _handshake, required=False) or (),
        sstp=_sstp_request(c),
    )


def _event(data: Any, path: str) -> Event:
    r = _Reader(data, path)
    provider = r.str_("provider", nullable=False)
    event_id = r.int_("id")
    if event_id is None:
        raise SnapshotError(r.at("id"), "must not be null")
    assert provider is not None
    return Event(provider=provider, id=event_id, time=_time(r.get("time"), r.at("time")),
                 message=r.str_("message", required=False))


def _probe_error(data: Any, path: str) -> ProbeError:
    r = _Reader(data, path)
    return ProbeError(section=str(r.str_("section") or ""), message=str(r.str_("message") or ""))


def _decode(raw: str | bytes | bytearray | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, bytes | bytearray):
        if len(raw) > MAX_SNAPSHOT_BYTES:
            raise SnapshotError("", f"the snapshot is larger than {MAX_SNAPSHOT_BYTES // (1024 * 1024)} MB")
        data = bytes(raw)
        try:
            if data.startswith((b"\xff\xfe", b"\xfe\xff")):
                text = data.decode("utf-16")
            else:
                text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SnapshotError("", f"the snapshot is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    elif isinstance(raw, str):
        # A str longer than the limit in characters is at least that long in UTF-8 bytes.
        if len(raw) > MAX_SNAPSHOT_BYTES:
            raise SnapshotError("", f"the snapshot is larger than {MAX_SNAPSHOT_BYTES // (1024 * 1024)} MB")
        text = raw.lstrip("\ufeff")
    else:
        raise SnapshotError("", f"expected JSON text or an object, got {type(raw).__name__}")
    if not text.strip():
        raise SnapshotError("", "the snapshot is empty")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SnapshotError("", f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise SnapshotError("", "not valid JSON (nested too deeply)") from None
    if not isinstance(value, dict):
        raise SnapshotError("", f"expected a JSON object, got {_kind(value)}")
    return value


def parse_snapshot(raw: str | bytes | bytearray | Mapping[str, Any]) -> Snapshot:
    """Validate probe output into a `Snapshot`; raises `SnapshotError(field, message)`."""
    data = _decode(raw)
    try:
        return _parse(data)
    except SnapshotError:
        raise
    except RecursionError:
        raise SnapshotError("", "nested too deeply") from None


def _parse(data: Mapping[str, Any]) -> Snapshot:
    r = _Reader(data, "")
    schema = r.get("schema")
    if schema != SCHEMA:
        raise SnapshotError("schema", f"expected {SCHEMA!r}, got {schema!r}")
    host = r.obj("host")
    probe_errors = r.list_("probe_errors", _probe_error)
    return Snapshot(
        schema=SCHEMA,
        collected_at=_time(r.get("collected_at"), "collected_at"),
        # A probe that could not read the host section reports null (and a probe error) like any
        # other section: every field is then unknown (is_admin None: NOT_ELEVATED is not claimed).
        host=_host(host.data, "host") if host is not None else Host(None, None, None, None, None),
        services=_services(r),
        sstp=_sstp(r),
        http_sys=_http_sys(r),
        iis=_iis(r),
        listeners=r.list_("listeners", _listener),
        certificates=r.list_("certificates", _certificate),
        vpn_connections=r.int_("vpn_connections", minimum=0),
        events=r.list_("events", _event),
        probe_errors=probe_errors or (),
        raw=data,
        events_omitted=r.int_("events_omitted", required=False, minimum=0),
        endpoint=_endpoint_info(r),
        client_view=_client_view(r),
    )
