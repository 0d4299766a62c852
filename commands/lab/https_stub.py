"""A stand-in HTTPS JSON API on 127.0.0.1 (for Slack's Web API in trust-store tests and benchmarks).

It presents the lab's WinRM certificate (issued by the lab CA for localhost / 127.0.0.1 / ::1), which
no public trust store knows: a verifying client refuses it unless it trusts `lab_ca_bundle()`.
Every POST is answered 200 with `body`.
"""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
from collections.abc import Iterator

from commands.lab.lab import _tls_files


@contextlib.contextmanager
def https_json_api(body: bytes = b'{"ok": true}') -> Iterator[str]:
    """Serve until the block ends; yields the API's base URL (`https://127.0.0.1:PORT/api/`)."""
    cert, key, _ca = _tls_files(False)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as slack.com

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="https-json-api", daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/api/"
    finally:
        server.shutdown()
        server.server_close()
