"""Shared fixtures of the operations tests: a small lab fleet and the CLI run in-process."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.cli import Environment, main
from commands.lab import Lab


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(["healthy", "iis-binding", "expired-with-renewal"]) as fleet:
        yield fleet


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Run]:
    def run(config: Path, *argv: str, clock: Callable[[], datetime] | None = None) -> Run:
        out, err = io.StringIO(), io.StringIO()
        env = Environment(stdout=out, stderr=err, stdin=io.StringIO(), environ={},
                          clock=clock or (lambda: datetime.now(UTC)))
        code = main(["--config", str(config), *argv], env)
        return Run(code, out.getvalue(), err.getvalue())

    return run


def set_remoteaccess(lab: Lab, server: str, status: str) -> None:
    """Stop or start the RemoteAccess service of a lab server (as an admin or a crash would)."""
    twin = lab.servers[server].twin
    with twin.lock:
        service = twin.state.services["RemoteAccess"]
        assert service is not None
        service.status = status
        if status == "Running":
            service.started_at = datetime.now(UTC)
    # As on Windows, the SSTP port follows the service at once: without this the lab's TLS view
    # followed at its next 50 ms poll, and a sweep started in between saw the port still open, then
    # closed at the next sweep (a changed finding set: an extra alert, about one run in ten).
    view = lab.servers[server].tls_view
    if view is not None:
        view.refresh()
