"""A loopback Socket Mode server: what `wss://wss-primary.slack.com/link` does, on ws://127.0.0.1.

Set `FakeSlackApi.socket_mode_url = server.url` so `apps.connections.open` hands it out. Each
connection gets `hello`; `send(envelope)` delivers an envelope to the live connection and
`wait_ack(envelope_id)` returns the client's acknowledgement; `drop()` cuts the connection (the SDK
then asks `apps.connections.open` again and reconnects).
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
import time
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve


class FakeSocketModeServer:
    def __init__(self) -> None:
        self._server = serve(self._session, "127.0.0.1", 0)
        self._thread: threading.Thread | None = None
        self._outbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self._acks: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._drop = threading.Event()
        self.connections = 0
        self.active = 0
        self.received: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._generation = 0  # as Slack does, new envelopes go to the newest connection only

    @property
    def url(self) -> str:
        port = self._server.socket.getsockname()[1]
        return f"ws://127.0.0.1:{port}/link/?ticket=test"

    def start(self) -> FakeSocketModeServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-socket-mode", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._drop.set()
        self._server.shutdown()

    def __enter__(self) -> FakeSocketModeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test side -----------------------------------------------------------------------------
    def new_envelope_id(self) -> str:
        return f"env-{next(self._ids)}"

    def send(self, envelope: dict[str, Any]) -> str:
        envelope.setdefault("envelope_id", self.new_envelope_id())
        self._outbox.put(envelope)
        return str(envelope["envelope_id"])

    def wait_connections(self, count: int, timeout: float = 10.0) -> None:
        """Block until `count` connections have said hello and one is live."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self.connections >= count and self.active > 0):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} connection(s), got {self.connections}")
                self._cond.wait(remaining)

    def wait_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while envelope_id not in self._acks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no ack for {envelope_id}")
                self._cond.wait(remaining)
            return self._acks[envelope_id]

    def drop(self) -> None:
        """Cut the live connection without a goodbye, as a network failure would."""
        self._drop.set()

    # --- server side -------------------------------------------------------------------------
    def _session(self, ws: ServerConnection) -> None:
        self._drop.clear()
        ws.send(json.dumps({
            "type": "hello", "num_connections": 1,
            "debug_info": {"host": "fake-socket-mode", "approximate_connection_time": 18060},
            "connection_info": {"app_id": "A0LAB0001"},
        }))
        with self._cond:
            self.connections += 1
            self.active += 1
            self._generation += 1
            generation = self._generation
            self._cond.notify_all()
        try:
            while not self._drop.is_set():
                envelope = None
                if generation == self._generation:
                    try:
                        envelope = self._outbox.get_nowait()
                    except queue.Empty:
                        envelope = None
                if envelope is not None:
                    ws.send(json.dumps(envelope))
                try:
                    raw = ws.recv(timeout=0.02)
                except TimeoutError:
                    continue
                message = json.loads(raw)
                with self._cond:
                    self.received.append(message)
                    if "envelope_id" in message:
                        self._acks[str(message["envelope_id"])] = message
                    self._cond.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                self.active -= 1
                self._cond.notify_all()
            if self._drop.is_set():
                ws.socket.close()  # abrupt: no close frame
