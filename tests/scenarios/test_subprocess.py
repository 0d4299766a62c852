"""Two terminals, as in the README: `python -m bot lab` in one process, the CLI in others; and `demo`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest

from commands.lab.lab import LAB_PASSWORD, WRONG_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30.0
COMMAND_TIMEOUT = 90.0

pytestmark = pytest.mark.subprocess


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SSTP_BOT_CONFIG", "PYTHONPATH")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def bot(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *argv],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


class Reader(threading.Thread):
    """Drains a child's pipe so it never blocks on a full buffer; keeps the text."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        super().__init__(daemon=True)
        self.stream, self.chunks = stream, []
        self.start()

    def run(self) -> None:
        for line in self.stream:
            self.chunks.append(line)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def wait_for_lab(path: Path, lab: subprocess.Popen[str], out: Reader, err: Reader) -> dict:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if lab.poll() is not None:
            pytest.fail(f"the lab exited early ({lab.returncode}): {out.text}\n{err.text}")
        if path.exists() and "Press Ctrl-C" in out.text:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        time.sleep(0.05)
    pytest.fail(f"the lab did not write {path} within {STARTUP_TIMEOUT} s: {out.text}\n{err.text}")


@pytest.mark.slow
def test_lab_in_one_process_cli_in_another(tmp_path: Path):
    config_path = tmp_path / "lab.toml"
    lab = subprocess.Popen(
        [sys.executable, "-m", "bot", "lab", "--write-config", str(config_path)],
        cwd=tmp_path,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = Reader(lab.stdout), Reader(lab.stderr)
    try:
        config = wait_for_lab(config_path, lab, out, err)
        servers = config["servers"]
        assert sorted(servers) == ["vpn01", "vpn02", "vpn03", "vpn04", "vpn05", "vpn06"]
        # NTLM with message encryption: HTTP transport, ntlm auth (the lab endpoint refuses
        # unencrypted messages over HTTP, so an answer proves the encryption).
        assert config["defaults"]["auth"] == "ntlm"
        assert {s["transport"] for s in servers.values()} == {"http"}
        assert {s["host"] for s in servers.values()} == {"127.0.0.1"}

        check = bot("--config", str(config_path), "check", "--all", "--json", cwd=tmp_path)
        docs = json.loads(check.stdout)
        assert isinstance(docs, list) and [d["server"] for d in docs] == list(servers)
        assert all(d["error"] is None for d in docs), [d["error"] for d in docs]
        assert check.returncode == 1, check.stderr
        assert {d["server"]: d["status"] for d in docs}["vpn02"] == "unhealthy"

        fix = bot("--config", str(config_path), "fix", "vpn02", "--yes", "--json", cwd=tmp_path)
        assert fix.returncode == 0, fix.stderr
        assert json.loads(fix.stdout)["state"] == "SUCCEEDED"

        history = bot("--config", str(config_path), "history", "vpn02", "--json", cwd=tmp_path)
        assert history.returncode == 0
        assert next(e["state"] for e in json.loads(history.stdout) if e["kind"] == "plan") == "SUCCEEDED"
        for text in (check.stdout, check.stderr, fix.stdout, fix.stderr, history.stdout, out.text, err.text):
            assert LAB_PASSWORD not in text and WRONG_PASSWORD not in text
        assert (tmp_path / "lab.db").exists()  # the inventory's default database, next to it

        lab.send_signal(signal.SIGINT)  # Ctrl-C in terminal 1
        assert lab.wait(timeout=15) == 0, err.text
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait(timeout=10)
    out.join(5)
    assert "Lab stopped." in out.text
    assert "Traceback" not in err.text

    # The lab is gone: the servers are unreachable now, and the CLI says so.
    after = bot("--config", str(config_path), "check", "vpn01", "--json", cwd=tmp_path)
    assert after.returncode == 2
    assert json.loads(after.stdout)["error"]["kind"] == "unreachable"


@pytest.mark.slow
def test_demo(tmp_path: Path):
    run = bot("demo", cwd=tmp_path)
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    out = run.stdout
    assert "Fleet check" in out and "healthy again" in out
    assert LAB_PASSWORD not in out + run.stderr
    assert list(tmp_path.iterdir()) == []  # the demo writes nothing outside its temporary directory
