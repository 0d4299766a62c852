"""Small TLS servers on 127.0.0.1 for the client view's tests: each error kind, for real."""

from __future__ import annotations

import contextlib
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from commands.lab.tlsview import lab_private_key


@dataclass
class Seen:
    """What the server saw: SNI names (None = no SNI) and the raw request heads."""

    sni: list[str | None] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)


def certificate_files(der: bytes) -> tuple[str, str]:
    """PEM files of a lab certificate and of the lab key that belongs to it."""
    key = lab_private_key(der)
    assert key is not None, "not a certificate made by the lab PKI in this process"
    folder = Path(tempfile.mkdtemp(prefix="sstp-bot-test-cv-"))
    (folder / "c.pem").write_text(ssl.DER_cert_to_PEM_cert(der), encoding="ascii")
    (folder / "k.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(folder / "c.pem"), str(folder / "k.pem")


@contextlib.contextmanager
def tls_server(der: bytes | None, answer: bytes | None) -> Iterator[tuple[int, Seen]]:
    """A TLS server presenting certificate `der` (None: no certificate, the handshake fails with an
    alert) that answers every request head with `answer` (None: reads and closes without a word)."""
    seen = Seen()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if der is not None:
        ctx.load_cert_chain(*certificate_files(der))

    def note_sni(_sock: object, name: str | None, _ctx: object) -> None:
        seen.sni.append(name)

    ctx.sni_callback = note_sni
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                tls = ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                return
            with tls:
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = tls.recv(4096)
                        if not chunk:
                            return
                        data += chunk
                    seen.requests.append(data)
                    if answer is not None:
                        tls.sendall(answer)
                except (ssl.SSLError, OSError):
                    return

    def serve() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, seen
    finally:
        stop.set()
        thread.join()
        listener.close()


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """Accepts TCP connections and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
