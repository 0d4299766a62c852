"""The lab's SSTP port as a VPN client sees it: a real TLS listener on 127.0.0.1 per lab server.

Each lab server's twin says which certificates HTTP.sys has bound; this listener makes the choice
HTTP.sys makes at handshake time (DOMAIN 2.2, DESIGN 11) and serves that certificate with the private
key the lab made for it:

1. an SNI binding `hostname:PORT` for the name the client sent (case-insensitive),
2. else the IP binding for the address the client reached (`127.0.0.1:PORT` here),
3. else the wildcard `0.0.0.0:PORT` (the listener is IPv4, so `[::]:PORT` never applies).

`PORT` is the twin's SSTP listener port: this socket stands for that port of the server. A binding
whose certificate is not in the store, or has no private key, cannot be served; no binding at all
means the handshake fails with an alert, as HTTP.sys fails it. Who answers HTTP (DOMAIN 5):
`SSTP_DUPLEX_POST` to SSTP's URL gets 200 while RemoteAccess runs with SSTP's URL registered; when
only another HTTP.sys application (IIS) listens on the port it gets 404; a process other than HTTP.sys
holding the port drops the connection. When nothing listens on the twin's port at all, the socket is
closed, so connections are refused as on the real server; it is reopened on the same port when the
twin listens again (checked after every script the lab runs, and every 50 ms).

The twin is read through the small accessor functions below (its snapshot, its state's certificates),
never changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from commands.lab import pki
from commands.lab.twin import RrasTwin

POLL_SECONDS = 0.05
#: A serve thread waits for its listener or its wake-up socket; this bounds the wait where neither fires.
ACCEPT_BACKSTOP_SECONDS = 2.0
HANDSHAKE_TIMEOUT = 5.0
SSTP_URL_UPPER = "/SRA_{BA195980-CD49-458B-9E23-C84EE0ADCD75}/"


# --- accessors on the twin (read only) ----------------------------------------------------------

def twin_certificate(twin: RrasTwin, thumbprint: str) -> tuple[bytes, bool] | None:
    """(DER, has a private key) of a certificate in the twin's LocalMachine\\My, or None."""
    with twin.lock:
        for cert in twin.state.certificates:
            if str(cert.thumbprint).upper() == thumbprint.upper():
                return bytes(cert.der), bool(getattr(cert, "has_private_key", True)) and getattr(
                    cert, "private_key_usable", True
                ) is not False
    return None


def twin_listening(twin: RrasTwin) -> bool:
    """Something accepts TCP on the twin's SSTP port (the twin's listener table, else its probe)."""
    # Every entry of `listeners()` is on the listener port, so this is "listeners() is not empty".
    return twin.listening()


# --- HTTP.sys's choice --------------------------------------------------------------------------

@dataclass(frozen=True)
class PortView:
    """What the twin's SSTP port does right now, as far as a client can tell."""

    listening: bool  # something accepts TCP on the port
    http_sys: bool  # that something is HTTP.sys (PID 4)
    sstp: bool  # SSTP's URL is registered: SSTP_DUPLEX_POST gets 200
    port: int
    ip_bindings: tuple[tuple[str, str], ...]  # (endpoint, certificate hash)
    sni_bindings: tuple[tuple[str, str], ...]


def port_view(twin: RrasTwin) -> PortView:
    """Read the twin once: who listens on its SSTP port and which bindings HTTP.sys holds.

    SSTP answers while its URL is registered in HTTP.sys (DESIGN 3 [2] `registered_urls`); with TLS
    offloaded (no registered URLs reported) while RemoteAccess runs with SSTP listening."""
    state = twin.port_state()
    port = int(state["listener_port"])
    listeners = [x for x in state["listeners"] if x.get("port") == port]
    urls = state["registered_urls"]
    if isinstance(urls, list):
        sstp = f"HTTPS://+:{port}{SSTP_URL_UPPER}" in (str(u).upper() for u in urls)
    else:
        sstp = bool(state["sstp_listening"])
    return PortView(
        listening=bool(listeners),
        http_sys=bool(listeners) and all(x.get("pid") == 4 for x in listeners),
        sstp=sstp,
        port=port,
        ip_bindings=tuple((str(e), str(c)) for e, c in state["ip_bindings"]),
        sni_bindings=tuple((str(e), str(c)) for e, c in state["sni_bindings"]),
    )


def chosen_binding(view: PortView, sni: str | None, address: str = "127.0.0.1") -> tuple[str, str] | None:
    """(endpoint, certificate hash) of the binding HTTP.sys uses for a handshake, or None (DOMAIN 2.2)."""
    if sni:
        wanted = f"{sni}:{view.port}".lower()
        for endpoint, cert in view.sni_bindings:
            if endpoint.lower() == wanted:
                return endpoint, cert
    for candidate in (f"{address}:{view.port}", f"0.0.0.0:{view.port}"):
        for endpoint, cert in view.ip_bindings:
            if endpoint == candidate:
                return endpoint, cert
    return None


class _Certificates:
    """One server TLS context per certificate, with the lab key that belongs to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._folder: Path | None = None

    def context(self, der: bytes) -> ssl.SSLContext | None:
        thumbprint = pki_thumbprint(der)
        with self._lock:
            if thumbprint in self._contexts:
                return self._contexts[thumbprint]
            key = lab_private_key(der)
            if key is None:
                return None
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix="sstp-bot-lab-tlsview-"))
            cert_path = self._folder / f"{thumbprint}.pem"
            key_path = self._folder / f"{thumbprint}.key"
            cert_path.write_bytes(ssl.DER_cert_to_PEM_cert(der).encode("ascii"))
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
            ctx = _server_context()
            # Weak lab certificates (1,024-bit RSA, SHA-1) must still be served: security level 0.
            ctx.load_cert_chain(str(cert_path), str(key_path))
            self._contexts[thumbprint] = ctx
            return ctx


def lab_private_key(der: bytes) -> pki.PrivateKey | None:
    """The private key of a certificate the lab PKI issued in this process, or None.

    Scenario certificates are issued with `pki.cached_key(type, size)` (slot 0, the default), one key
    per type and size per process; the certificate's public key says which, and must match."""
    public = x509.load_der_x509_certificate(der).public_key()
    if isinstance(public, rsa.RSAPublicKey):
        key: pki.PrivateKey = pki.cached_key("rsa", public.key_size)
    elif isinstance(public, ec.EllipticCurvePublicKey) and public.curve.key_size in (256, 384, 521):
        key = pki.cached_key("ec", public.curve.key_size)
    else:
        return None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key if key.public_key().public_bytes(*spki) == public.public_bytes(*spki) else None


def pki_thumbprint(der: bytes) -> str:
    """The Windows thumbprint (SHA-1 of the DER, upper-case hex)."""
    return hashlib.sha1(der).hexdigest().upper()


def _server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class TlsView:
    """The TLS listener of one lab server's SSTP port (see the module docstring)."""

    def __init__(self, twin: RrasTwin, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.twin = twin
        self.host = host
        self._certificates = _Certificates()
        self._base = _server_context()
        self._base.sni_callback = self._choose
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # The port is held by a socket that never listens (connections to a closed port are still
        # refused, as on the server). Without it, the moment the listener closes, an outgoing
        # connection of this machine could take the port as its ephemeral local port, and reopening
        # it would fail with "Address already in use". Linux lets SO_REUSEADDR sockets share a port
        # while at most one listens, and never hands out a port a bound socket holds for connect().
        self._reserve = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._reserve.bind((host, port))
        self.port: int = self._reserve.getsockname()[1]
        self._sock: socket.socket | None = self._bind(self.port)
        # Closing the listener does not wake a thread waiting in accept() with a timeout (Python polls
        # the socket first, and a shut-down listener does not signal the poll): the serve thread also
        # waits on this pair, and every close writes a byte to it.
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._local = threading.local()
        #: Notified when the listening socket is reopened or the view stops (the serve thread waits).
        self._changed = threading.Condition(self._lock)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        sock.listen(64)
        # accept() blocks: closing the listener (refresh, stop) wakes it (`_close_listener`). The
        # timeout is only a backstop; the twin is polled by the shared `_POLLER`, not by this thread.
        sock.settimeout(ACCEPT_BACKSTOP_SECONDS)
        return sock

    def start(self) -> TlsView:
        self.refresh()
        self._thread = threading.Thread(target=self._serve, name=f"lab-tlsview:{self.port}", daemon=True)
        self._thread.start()
        _POLLER.add(self)
        return self

    def stop(self) -> None:
        self._stop.set()
        _POLLER.remove(self)
        with self._lock:
            if self._sock is not None:
                _close_listener(self._sock)
                self._sock = None
            self._wake()
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(2.0)
        with self._lock:
            for conn in list(self._conns):
                _close(conn)
            self._reserve.close()
            self._wake_r.close()
            self._wake_w.close()

    def refresh(self) -> None:
        """Open or close the listening socket to match whether anything listens on the twin's port."""
        if self._stop.is_set():
            return
        listening = twin_listening(self.twin)
        if listening == (self._sock is not None):
            return  # nothing to change (the common case of the 50 ms poll); decided again under the lock
        with self._lock:
            if listening and self._sock is None:
                self._sock = self._bind(self.port)
                self._changed.notify_all()
            elif not listening and self._sock is not None:
                _close_listener(self._sock)
                self._sock = None
                self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                while self._sock is None and not self._stop.is_set():
                    self._changed.wait()  # until refresh reopens the socket or stop
                sock = self._sock
            if sock is None:
                continue
            try:
                ready, _, _ = select.select([sock, self._wake_r], [], [], ACCEPT_BACKSTOP_SECONDS)
            except (OSError, ValueError):  # closed by refresh or stop meanwhile
                continue
            if self._wake_r in ready:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(64)
                continue  # the listener changed: take the current one
            if sock not in ready:
                continue  # the backstop
            try:
                conn, _ = sock.accept()
            except OSError:  # closed by refresh or stop meanwhile, or the client gave up
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _refresh_quietly(self) -> None:
        with contextlib.suppress(Exception):  # a twin mid-change: the next poll looks again
            self.refresh()

    def _choose(self, tls: ssl.SSLObject | ssl.SSLSocket, sni: str | None, _ctx: ssl.SSLContext) -> int | None:
        """HTTP.sys's certificate choice at ClientHello time; an alert when it has nothing to serve."""
        # The view read when the connection was accepted (same thread), else a fresh one.
        view = getattr(self._local, "view", None) or port_view(self.twin)
        address = str(tls.getsockname()[0]) if isinstance(tls, ssl.SSLSocket) else self.host
        binding = chosen_binding(view, sni, address)
        found = twin_certificate(self.twin, binding[1]) if binding else None
        if found is None or not found[1]:
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        ctx = self._certificates.context(found[0])
        if ctx is None:
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        tls.context = ctx
        return None

    def _handle(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)
        try:
            view = port_view(self.twin)  # one reading of the twin per connection
            if not view.http_sys:
                return  # another program holds the port: it speaks no TLS we can model; drop it
            conn.settimeout(HANDSHAKE_TIMEOUT)
            self._local.view = view
            try:
                tls = self._base.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                return
            finally:
                self._local.view = None
            try:
                request = _read_head(tls)
                if request is None:
                    return
                method, path = request
                if view.sstp and method == "SSTP_DUPLEX_POST" and path.upper() == SSTP_URL_UPPER:
                    # MS-SSTP 3.3.5.1: 200 with the same endless Content-Length; the SSTP exchange would
                    # follow on this connection. The client view closes here.
                    tls.sendall(b"HTTP/1.1 200 \r\nContent-Length: 18446744073709551615\r\n"
                                b"Server: Microsoft-HTTPAPI/2.0\r\n\r\n")
                else:
                    body = b"<h2>Not Found</h2>"
                    tls.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nServer: Microsoft-HTTPAPI/2.0\r\n"
                                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            except (ssl.SSLError, OSError):
                pass
            finally:
                _close(tls)
        finally:
            _close(conn)
            with self._lock:
                self._conns.discard(conn)


class _Poller:
    """One thread refreshes every started TlsView of the process each POLL_SECONDS.

    The views used to poll from their own serve threads (an accept() timeout of 50 ms each): with a
    hundred lab servers that was 2,000 thread wake-ups a second, most of an idle lab's CPU. Each view's
    refresh is unchanged (the same twin reading, at the same period); only who calls it changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._views: dict[int, TlsView] = {}
        self._thread: threading.Thread | None = None

    def add(self, view: TlsView) -> None:
        with self._lock:
            self._views[id(view)] = view
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lab-tlsview-poller", daemon=True)
                self._thread.start()

    def remove(self, view: TlsView) -> None:
        with self._lock:
            self._views.pop(id(view), None)

    def _run(self) -> None:
        while True:
            time.sleep(POLL_SECONDS)
            with self._lock:
                views = list(self._views.values())
                if not views:
                    self._thread = None  # the next add starts a new one
                    return
            for view in views:
                view._refresh_quietly()


_POLLER = _Poller()


def _read_head(tls: ssl.SSLSocket) -> tuple[str, str] | None:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 16384:
        chunk = tls.recv(4096)
        if not chunk:
            return None
        data += chunk
    parts = data.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    return (parts[0], parts[1]) if len(parts) >= 3 else None


def _close_listener(sock: socket.socket) -> None:
    """Stop listening at once. close() alone leaves the socket listening while the serve thread is
    inside accept(); shutdown() ends the listen state on Linux, so new connections are refused."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
