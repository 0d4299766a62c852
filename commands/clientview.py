"""The client view (DESIGN 11): what a VPN client sees when it connects to the server.

After each probe the bot itself connects to the server like an SSTP client: two TLS handshakes
(without SNI, which HTTP.sys answers from the IP binding, and with SNI = `public_name`, which an SNI
binding may answer instead; DOMAIN 2.2), then the MS-SSTP `SSTP_DUPLEX_POST` request over the SNI
connection. Certificate validation is off: the point is to see the certificate, whatever it is. What
it saw goes into the snapshot as `client_view`, so `diagnose --snapshot` replays it; the engine turns
it into the CLIENT_* findings (DESIGN 4). Nothing here needs PowerShell.

Decisions where DESIGN leaves room:
- The whole view is bounded by `connect_timeout` (one deadline for everything, not per read): the
  two connections run in parallel, each until the same deadline.
- Error kinds: `unreachable` when no TCP connection was made (refused, no route, name not resolved,
  and also a TCP connect that timed out: "possibly only a firewall"), `timeout` when TCP connected
  but the server did not finish the handshake (or did not answer the SSTP request) before the
  deadline, `tls` for every TLS failure after TCP connected (alert, reset, no certificate, and a
  connection closed before an HTTP answer). The engine judges `tls` as CLIENT_TLS_FAILED and a view
  whose handshakes all failed otherwise as CLIENT_UNREACHABLE.
- Where it runs: `ClientViewSession` wraps a remote session; its `probe()` starts the view in a
  thread, runs the probe, then waits for what is left of the view's deadline (usually nothing: one
  TLS round trip against the probe's several) and adds it to the snapshot. A bug or a network failure
  here never fails the check; `bench/bench_clientview.py` measures the cost as a ratio.
- Which endpoint: `client_endpoint` when set. Otherwise the SSTP listener port is only known once the
  probe has answered, so the view starts beside the probe on `host:443` (the SSTP default,
  DOMAIN 0); when the probe then reports another `sstp.listener_port`, the view is collected again on
  that port after the probe (only that rare server pays for it).
- A `public_name` that is an IP address is not sent as SNI by TLS clients (RFC 6066); the SNI
  handshake then records the name but the server sees none. Without a `public_name` only the no-SNI
  handshake is made and the SSTP request goes over it (`sni: null`).
- `client_view` is null with `client_view = false`, and in TLS offload mode (`use_https` false)
  without `offload_sha256` (nothing to compare the load balancer's certificate with).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import re
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent import futures
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from commands.model import format_time
from commands.server import ServerConfig

log = logging.getLogger(__name__)

DEFAULT_SSTP_PORT = 443
#: The SSTP URL path as MS-SSTP 2.2.1 spells it (mixed case), the one every SSTP client requests.
SSTP_PATH = "/sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/"
#: MS-SSTP: the client announces an endless body (2^64 - 1 bytes) with SSTP_DUPLEX_POST.
SSTP_CONTENT_LENGTH = "18446744073709551615"
MAX_STATUS_LINE = 8192

_ENDPOINT_RE = re.compile(r"^\[(?P<v6>[^\]]+)\]:(?P<p6>\d{1,5})$|^(?P<host>[^:\[\]]+):(?P<port>\d{1,5})$")

Json = dict[str, Any]


class _Failure(Exception):
    """One failed step of a connection: an error kind of DESIGN 11 and a message for the admin."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def to_json(self) -> Json:
        return {"kind": self.kind, "message": self.message}


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """`host:port` or `[IPv6]:port` -> (host, port). Raises ValueError for anything else."""
    m = _ENDPOINT_RE.match(endpoint.strip())
    if not m:
        raise ValueError(f"expected host:port or [IPv6]:port, got {endpoint!r}")
    host, port = (m["v6"], m["p6"]) if m["v6"] else (m["host"], m["port"])
    if not 0 < int(port) < 65536:
        raise ValueError(f"{port} is not a TCP port")
    return host, int(port)


def join_endpoint(host: str, port: int) -> str:
    """The inverse of `split_endpoint` (IPv6 literals in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@functools.cache
def client_context() -> ssl.SSLContext:
    """One per process (a context is safe to share between threads; nothing here changes it after).

    A TLS client that accepts any certificate and any protocol version the server offers.

    Validation is off on purpose (DESIGN 11), and the security level is 0 so that a weak certificate
    (1,024-bit RSA, SHA-1 signature: SSTP_CERT_WEAK) or an old protocol is still seen and recorded
    rather than refused before we know what it was."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return ctx


def _remaining(deadline: float, what: str, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Failure("timeout", f"{what}: no answer within {timeout:g} s (connect_timeout)")
    return left


def _connect(host: str, port: int, deadline: float, timeout: float) -> socket.socket:
    where = join_endpoint(host, port)
    try:
        return socket.create_connection((host, port), timeout=_remaining(deadline, f"connect to {where}", timeout))
    except _Failure as exc:
        raise _Failure("unreachable", exc.message) from None
    except TimeoutError:
        raise _Failure("unreachable", f"no TCP connection to {where} within {timeout:g} s") from None
    except ConnectionRefusedError:
        raise _Failure("unreachable", f"connection to {where} refused") from None
    except socket.gaierror as exc:
        raise _Failure("unreachable", f"cannot resolve {host}: {exc.strerror or exc}") from None
    except OSError as exc:
        raise _Failure("unreachable", f"cannot connect to {where}: {exc.strerror or exc}") from None


def _tls(sock: socket.socket, sni: str | None, deadline: float, timeout: float, where: str) -> ssl.SSLSocket:
    try:
        tls = client_context().wrap_socket(sock, server_hostname=sni, do_handshake_on_connect=False)
    except (ValueError, UnicodeError) as exc:  # a name the idna codec refuses
        sock.close()
        raise _Failure("tls", f"cannot send SNI {sni!r}: {exc}") from None
    try:
        tls.settimeout(_remaining(deadline, f"TLS handshake with {where}", timeout))
        tls.do_handshake()
    except TimeoutError:
        tls.close()
        raise _Failure("timeout", f"TLS handshake with {where}: no answer within {timeout:g} s (connect_timeout)") from None
    except _Failure:
        tls.close()
        raise
    except ssl.SSLError as exc:
        tls.close()
        raise _Failure("tls", f"TLS handshake with {where} failed: {exc.reason or exc}") from None
    except OSError as exc:  # reset, broken pipe
        tls.close()
        raise _Failure("tls", f"TLS handshake with {where} failed: {exc.strerror or exc}") from None
    return tls


def _sstp_request(host_header: str) -> bytes:
    # MS-SSTP 3.2.5.1: the request line, Host, the endless Content-Length and a correlation GUID.
    correlation = "{" + str(uuid.uuid4()).upper() + "}"
    return (
        f"SSTP_DUPLEX_POST {SSTP_PATH} HTTP/1.1\r\n"
        f"Host: {host_header}\r\n"
        f"Content-Length: {SSTP_CONTENT_LENGTH}\r\n"
        f"SSTPCORRELATIONID: {correlation}\r\n"
        "\r\n"
    ).encode("ascii")


def _status_line(tls: ssl.SSLSocket, request: bytes, deadline: float, timeout: float, where: str) -> int:
    """Send the SSTP request and read the HTTP status code of the answer."""
    what = f"SSTP_DUPLEX_POST to {where}"
    received = b""
    try:
        tls.settimeout(_remaining(deadline, what, timeout))
        tls.sendall(request)
        while b"\r\n" not in received and len(received) < MAX_STATUS_LINE:
            tls.settimeout(_remaining(deadline, what, timeout))
            chunk = tls.recv(MAX_STATUS_LINE)
            if not chunk:
                break
            received += chunk
    except TimeoutError:
        raise _Failure("timeout", f"{what}: no answer within {timeout:g} s (connect_timeout)") from None
    except (ssl.SSLError, OSError) as exc:
        if not received:
            raise _Failure("tls", f"{what}: the connection failed before an answer: {exc}") from None
    line = received.split(b"\r\n", 1)[0].decode("latin-1")
    if not line:
        raise _Failure("tls", f"{what}: the server closed the connection without an HTTP answer")
    m = re.match(r"^HTTP/\d\.\d (\d{3})\b", line)
    if not m:
        raise _Failure("tls", f"{what}: the answer is not HTTP: {line[:80]!r}")
    return int(m.group(1))


def _visit(host: str, port: int, sni: str | None, deadline: float, timeout: float, *, sstp: bool) -> tuple[Json, Json | None]:
    """One connection: TLS handshake (and the SSTP request when `sstp`). Never raises."""
    where = join_endpoint(host, port)
    handshake: Json = {"sni": sni, "ok": False, "error": None, "tls_version": None, "cert_sha256": None,
                       "cert_sha1": None, "der": None}
    sstp_result: Json | None = {"sni": sni, "ok": False, "http_status": None, "error": None} if sstp else None
    tls: ssl.SSLSocket | None = None
    try:
        tls = _tls(_connect(host, port, deadline, timeout), sni, deadline, timeout, where)
        der = tls.getpeercert(binary_form=True)
        if not der:
            raise _Failure("tls", f"TLS handshake with {where}: the server sent no certificate")
        handshake.update(
            ok=True,
            tls_version=tls.version(),
            cert_sha256=hashlib.sha256(der).hexdigest().upper(),
            cert_sha1=hashlib.sha1(der).hexdigest().upper(),
            der=base64.b64encode(der).decode("ascii"),
        )
    except _Failure as exc:
        handshake["error"] = exc.to_json()
        if sstp_result is not None:
            sstp_result["error"] = exc.to_json()
        if tls is not None:
            tls.close()
        return handshake, sstp_result
    try:
        if sstp_result is not None:
            status = _status_line(tls, _sstp_request(sni or host), deadline, timeout, where)
            sstp_result.update(ok=status == 200, http_status=status)
    except _Failure as exc:
        if sstp_result is not None:
            sstp_result["error"] = exc.to_json()
    finally:
        tls.close()
    return handshake, sstp_result


#: Threads for client views and their parallel no-SNI handshakes, kept for the next check: starting a
#: thread per view and per handshake cost more CPU than the handshake's Python side. Idle threads are
#: reused and new ones started only while all are busy (so there are never more than the most views
#: that ran at once), up to 512: 256 checks at once never wait for a thread. Each task ends by its
#: connect_timeout deadline.
_THREADS = futures.ThreadPoolExecutor(max_workers=512, thread_name_prefix="client-view")


def collect(endpoint: str, public_name: str | None, timeout: float, clock: Callable[[], datetime]) -> Json:
    """The `client_view` document of DESIGN 11 for `endpoint`, within `timeout` seconds overall.

    Never raises for anything the network does: every failure is recorded in the document."""
    collected_at = format_time(clock())
    host, port = split_endpoint(endpoint)
    deadline = time.monotonic() + timeout
    plain: list[tuple[Json, Json | None]] = []
    if public_name:
        # The no-SNI handshake in parallel with the SNI one, under the same deadline.
        other = _THREADS.submit(lambda: plain.append(_visit(host, port, None, deadline, timeout, sstp=False)))
        with_sni, sstp = _visit(host, port, public_name, deadline, timeout, sstp=True)
        futures.wait([other], max(0.0, deadline - time.monotonic()) + 1.0)
        without_sni = plain[0][0] if plain else {
            "sni": None, "ok": False, "error": {"kind": "timeout", "message": "the handshake did not finish in time"},
            "tls_version": None, "cert_sha256": None, "cert_sha1": None, "der": None}
        handshakes = [without_sni, with_sni]
    else:
        without_sni, sstp = _visit(host, port, None, deadline, timeout, sstp=True)
        handshakes = [without_sni]
    if not any(h["ok"] for h in handshakes):
        sstp = None  # DESIGN 11: no handshake succeeded, so no SSTP request could be made
    return {"endpoint": join_endpoint(host, port), "collected_at": collected_at, "handshakes": handshakes,
            "sstp": sstp}


def _listener_port(raw: Mapping[str, Any]) -> int:
    sstp = raw.get("sstp")
    port = sstp.get("listener_port") if isinstance(sstp, Mapping) else None
    return port if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536 else DEFAULT_SSTP_PORT


def _offloaded(raw: Mapping[str, Any]) -> bool:
    sstp = raw.get("sstp")
    return isinstance(sstp, Mapping) and sstp.get("use_https") is False


class PendingClientView:
    """A client view started beside a probe; `attach` adds it to the probe's snapshot.

    `start_client_view(server, clock)` starts it; the probe runs meanwhile; `attach(raw)` waits for
    what is left of the view's deadline and returns the snapshot with `client_view`. Never raises."""

    def __init__(self, server: ServerConfig, clock: Callable[[], datetime]) -> None:
        self.server = server
        self.clock = clock
        self.endpoint: str | None = None
        self._result: list[Json] = []
        self._thread: futures.Future[None] | None = None
        if not server.client_view:
            return
        self.endpoint = server.client_endpoint or join_endpoint(server.host, DEFAULT_SSTP_PORT)
        self._thread = _THREADS.submit(self._run, self.endpoint)

    def _run(self, endpoint: str) -> None:
        try:
            self._result.append(collect(endpoint, self.server.public_name, self.server.connect_timeout, self.clock))
        except Exception:  # a bug here must never fail the check
            log.exception("client view of %s failed", self.server.name)

    def view_for(self, raw: Mapping[str, Any]) -> Json | None:
        """The `client_view` for this probe output (None when off or not applicable)."""
        if self._thread is None or self.endpoint is None:
            return None
        if _offloaded(raw) and not self.server.offload_sha256:
            return None
        port = _listener_port(raw)
        if self.server.client_endpoint is None and port != DEFAULT_SSTP_PORT:
            # The probe says SSTP listens elsewhere: look where the clients go (module docstring).
            # The first attempt (on port 443) is left to end by itself, unread.
            self.endpoint = join_endpoint(self.server.host, port)
            return collect(self.endpoint, self.server.public_name, self.server.connect_timeout, self.clock)
        futures.wait([self._thread], self.server.connect_timeout + 1.0)
        return self._result[-1] if self._result else None

    def attach(self, raw: Any) -> Any:
        """`raw` with `client_view` set (a new dict). A probe output that is not a mapping is returned
        as it is: the engine reports it as bad output."""
        if not isinstance(raw, Mapping):
            return raw
        try:
            view = self.view_for(raw)
        except Exception:
            log.exception("client view of %s failed", self.server.name)
            view = None
        return {**raw, "client_view": view}


def start_client_view(server: ServerConfig, clock: Callable[[], datetime]) -> PendingClientView:
    """Start the client view of `server` in the background (nothing starts with `client_view = false`)."""
    return PendingClientView(server, clock)


# --- wording: one line for the reports (Slack card, terminal, fix verdict) -------------------------

def _certificate_label(der_b64: str | None) -> tuple[str, str]:
    """(`CN=...`, `expires YYYY-MM-DD`) of a presented certificate; placeholders when unreadable."""
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(der_b64 or ""))
    except (ValueError, TypeError):
        return "an unreadable certificate", "expiry unknown"
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    subject = f"CN={names[0].value!s}" if names else (cert.subject.rfc4514_string() or "no subject")
    return subject, f"expires {cert.not_valid_after_utc.strftime('%Y-%m-%d')}"


def _expected(snapshot: Mapping[str, Any], offload_sha256: str | None) -> tuple[str | None, str | None, bool]:
    """(expected SHA-256, expected SHA-1, offloaded): what clients should be served (DESIGN 4)."""
    sstp = snapshot.get("sstp") if isinstance(snapshot.get("sstp"), Mapping) else {}
    assert isinstance(sstp, Mapping)
    if sstp.get("use_https") is False:
        return (offload_sha256.upper() if offload_sha256 else None), None, True
    remote = sstp.get("remote_access") if isinstance(sstp.get("remote_access"), Mapping) else {}
    assert isinstance(remote, Mapping)
    sha256 = sstp.get("sha256_hash")
    sha1 = sstp.get("sha1_hash") or remote.get("thumbprint")
    return (str(sha256).upper() if sha256 else None), (str(sha1).upper() if sha1 else None), False


def _matches(handshake: Mapping[str, Any], sha256: str | None, sha1: str | None) -> bool:
    if sha256:
        return handshake.get("cert_sha256") == sha256
    return bool(sha1) and handshake.get("cert_sha1") == sha1


def client_view_state(snapshot: Mapping[str, Any] | None, offload_sha256: str | None = None) -> str | None:
    """"ok" (every handshake got the expected certificate and SSTP answered 200), "bad", or None
    when the snapshot has no client view."""
    view = (snapshot or {}).get("client_view")
    if not isinstance(view, Mapping):
        return None
    sha256, sha1, _ = _expected(snapshot or {}, offload_sha256)
    handshakes = [h for h in view.get("handshakes") or [] if isinstance(h, Mapping)]
    sstp = view.get("sstp")
    good = bool(handshakes) and all(h.get("ok") and _matches(h, sha256, sha1) for h in handshakes)
    return "ok" if good and isinstance(sstp, Mapping) and sstp.get("ok") else "bad"


def client_view_line(
    snapshot: Mapping[str, Any] | None, *, full_hashes: bool = True, offload_sha256: str | None = None
) -> str | None:
    """One line saying what VPN clients get, or None when the snapshot has no client view.

    "Clients get CN=vpn.example.com, 5CE8..., expires 2027-10-01: matches SSTP; SSTP answers 200", or
    the mismatch with both hashes in full. `full_hashes=False` (Slack) shortens a matching hash only;
    a hash that differs is always shown in full, next to the expected one."""
    view = (snapshot or {}).get("client_view")
    if not isinstance(view, Mapping):
        return None
    snapshot = snapshot or {}
    sha256, sha1, offloaded = _expected(snapshot, offload_sha256)
    handshakes = [h for h in view.get("handshakes") or [] if isinstance(h, Mapping)]
    endpoint = view.get("endpoint") or "the server"
    if not handshakes or not any(h.get("ok") for h in handshakes):
        error = (handshakes[0].get("error") if handshakes else None) or {}
        return f"Clients cannot get a TLS session from {endpoint}: {error.get('message') or 'no handshake was made'}"
    parts: list[str] = []
    failures: list[str] = []
    seen: dict[str, list[str]] = {}
    for h in handshakes:
        where = f"with SNI {h.get('sni')}" if h.get("sni") else "without SNI"
        if not h.get("ok"):
            failures.append(f"{where}: {(h.get('error') or {}).get('message', 'the handshake failed')}")
            continue
        seen.setdefault(str(h.get("cert_sha256")), []).append(where)
    for cert_sha256, wheres in seen.items():
        h = next(x for x in handshakes if x.get("cert_sha256") == cert_sha256)
        subject, expires = _certificate_label(h.get("der"))
        ok = _matches(h, sha256, sha1)
        shown = cert_sha256 if full_hashes or not ok else cert_sha256[:4] + "…"
        scope = "" if len(seen) == 1 and len(wheres) == len(handshakes) else f" ({' and '.join(wheres)})"
        if ok:
            verdict = "matches the offload hash" if offloaded else "matches SSTP"
        elif offloaded and sha256 is None:
            verdict = "TLS is offloaded: the load balancer's certificate"
        elif offloaded:
            verdict = f"offload_sha256 is {sha256}"
        elif sha256 or sha1:
            verdict = f"SSTP expects {sha256 or sha1}"
        else:
            verdict = "SSTP has no certificate configured"
        parts.append(f"{subject}, {shown}, {expires}{scope}: {verdict}")
    parts += failures
    sstp = view.get("sstp")
    if isinstance(sstp, Mapping):
        if sstp.get("ok"):
            parts.append("SSTP answers 200")
        elif sstp.get("http_status") is not None:
            parts.append(f"SSTP_DUPLEX_POST got HTTP {sstp.get('http_status')}, not 200")
        else:
            parts.append(f"SSTP_DUPLEX_POST failed: {(sstp.get('error') or {}).get('message', 'no answer')}")
    return "Clients get " + "; ".join(parts)


def fix_verdict_line(snapshot: Mapping[str, Any] | None, offload_sha256: str | None = None) -> str | None:
    """The client view's part of a fix's final verdict, or None without a client view."""
    state = client_view_state(snapshot, offload_sha256)
    if state is None:
        return None
    if state == "ok":
        return "Clients now receive the SSTP certificate and SSTP answers 200 (checked by a TLS handshake)."
    return "Clients still do not get a working SSTP endpoint: " + str(client_view_line(snapshot, offload_sha256=offload_sha256))


class ClientViewSession:
    """A remote session whose `probe()` collects the client view beside the probe and returns the
    snapshot with it (DESIGN 11); everything else is the wrapped session's.

    `with ClientViewSession(session_factory(server, password), server, clock) as session:` is the
    one change a caller needs: every probe of a check, and a fix's re-probe, then carries what
    clients see. Scripts run through `run()` (a fix's steps, the executor's state probes) do not."""

    def __init__(self, session: Any, server: ServerConfig, clock: Callable[[], datetime]) -> None:
        self._session = session
        self._inner: Any = session
        self.server = server
        self.clock = clock

    def __enter__(self) -> ClientViewSession:
        self._inner = self._session.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._session.__exit__(exc_type, exc, tb)

    def probe(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The wrapped session's probe, with `client_view` collected beside it."""
        pending = start_client_view(self.server, self.clock)
        raw: dict[str, Any] = pending.attach(self._inner.probe(*args, **kwargs))
        return raw

    def run(self, script: str, **params: Any) -> dict[str, Any]:
        """The wrapped session's script run, untouched."""
        result: dict[str, Any] = self._inner.run(script, **params)
        return result

    def __getattr__(self, name: str) -> Any:
        # Anything else a session offers (now or later) is the wrapped session's.
        return getattr(self._inner, name)
