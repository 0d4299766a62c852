"""Issue 14, item 9: a server's own text (an HTTP 500 body before authentication) with escape
sequences reaches neither the terminal nor the database: `check` and a later `history` print it
without control characters. The server is a hostile HTTP endpoint on 127.0.0.1, reached through the
real pypsrp client by the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from storage import Repository

BODY = b"\x1b[2J\x1b]0;pwned\x07\x1b[31mERROR\r\nforged line\x9b1m"


class _Hostile(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def run(config: Path, *args: str) -> bytes:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-m", "bot", "--config", str(config), *args], capture_output=True, env=env, timeout=60, check=False)
    return done.stdout + done.stderr


def test_server_text_is_printed_and_stored_without_control_characters(hostile: int, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x")
    config = tmp_path / "sstp-bot.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/bot.db"\n[defaults]\nusername = "LAB\\\\sstp-bot"\n'
        f'password_file = "{tmp_path}/pw"\nauth = "ntlm"\nconnect_timeout = 5\noperation_timeout = 10\n'
        f'[servers.evil]\nhost = "127.0.0.1"\nport = {hostile}\ntransport = "http"\n'
    )
    checked = run(config, "check", "evil")
    assert b"HTTP 500" in checked and b"forged line" in checked
    history = run(config, "history", "evil")
    for out in (checked, history):
        assert b"\x1b" not in out and b"\x07" not in out and b"\x9b" not in out.replace(b"\xc2\x9b", b"\x9b") and b"\r" not in out
    with Repository(f"sqlite:///{tmp_path}/bot.db") as repo:
        (latest,) = repo.latest_checks()
        assert latest.error_message and "forged line" in latest.error_message
        assert not any((ord(c) < 32 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F for c in latest.error_message)
