"""Wait for a starting `sstp-bot serve` to answer `/healthz` on loopback."""

from __future__ import annotations

import time
import urllib.request


def wait_for_healthz(base_url: str, timeout: float = 10.0) -> int:
    """Poll `base_url + /healthz` until it answers; return the HTTP status. Re-raises the last
    connection error once `timeout` seconds have passed (the server never listened)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                return int(response.status)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
