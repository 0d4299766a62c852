"""Closing a Socket Mode connection over TLS while its reader waits in `recv()` (bot/slack/server.py).

Slack's Socket Mode runs over `wss://` (TLS, port 443), which the loopback fake (plain `ws://`) does
not exercise: here slack_sdk's own reader loop runs on a real TLS socket to a local TLS server, and
`close()` must end its pending 3-second read at once instead of waiting for it.
"""

from __future__ import annotations

import datetime
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from slack_sdk.socket_mode.builtin.connection import ConnectionState

from bot.slack.server import _PromptCloseConnection

SLACK_READ_TIMEOUT = 3.0  # slack_sdk's built-in `Connection` reads with a 3 s socket timeout


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1)).sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def _text_frame(text: str) -> bytes:
    data = text.encode()
    assert len(data) < 126  # a short unmasked server frame (RFC 6455 5.2)
    return bytes([0x81, len(data)]) + data


@pytest.fixture
def tls_link(tmp_path: Path) -> Iterator[ssl.SSLSocket]:
    """A client TLS socket, set up as slack_sdk sets up `wss://` (3 s timeout, ragged EOFs suppressed),
    to a local server that sends `hello` and then stays silent (as Slack does between envelopes)."""
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        raw, _ = listener.accept()
        with server_ctx.wrap_socket(raw, server_side=True) as conn:
            conn.sendall(_text_frame(json.dumps({"type": "hello"})))
            done.wait(10)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    client_ctx = ssl.create_default_context(cafile=str(cert))
    raw = socket.create_connection(listener.getsockname(), timeout=SLACK_READ_TIMEOUT)
    sock = client_ctx.wrap_socket(raw, do_handshake_on_connect=True, suppress_ragged_eofs=True, server_hostname="localhost")
    yield sock
    done.set()
    server.join(5)
    listener.close()


def test_close_ends_the_pending_tls_read_at_once(tls_link: ssl.SSLSocket) -> None:
    received: list[str] = []
    errors: list[Exception] = []
    connection = _PromptCloseConnection(
        url="wss://localhost/link", logger=logging.getLogger("test"), on_message_listener=received.append, on_error_listener=errors.append
    )
    connection.sock = tls_link
    state = ConnectionState()
    reader = threading.Thread(target=connection.run_until_completion, args=(state,), daemon=True)
    reader.start()
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert received and json.loads(received[0])["type"] == "hello"
    time.sleep(0.1)  # the reader is back in recv(), holding the receive lock for up to 3 s

    state.terminated = True  # what SocketModeClient.connect does to the old session, then close()
    started = time.monotonic()
    connection.close()
    elapsed = time.monotonic() - started
    reader.join(1.0)

    assert elapsed < 0.5, f"close() waited {elapsed:.2f} s for the pending read"
    assert not reader.is_alive()
    assert connection.sock is None and tls_link.fileno() == -1
    assert errors == []  # a clean end of the read, not an error logged by slack_sdk
