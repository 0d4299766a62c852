"""Black-box contract tests of the sstp-bot CLI (DESIGN.md sections 3, 4, 7).

The CLI runs as a subprocess (`python -m bot`), against a loopback lab started once per test
session. The inventory is written by these tests (not by `lab --write-config`), with the WinRM
password taken from an environment variable named by `password_env`, as DESIGN 7 requires.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "commands" / "examples"
PW_VAR = "AUDIT_CLI_WINRM_PW"
WRONG_PW_VAR = "AUDIT_CLI_WRONG_PW"

STATUS_VALUES = {"healthy", "unhealthy", "error"}
SEVERITIES = {"critical", "warning", "info"}
ERROR_KINDS = {"config", "unreachable", "tls", "auth", "timeout", "script_failed", "bad_output"}
HEX64 = re.compile(r"^[0-9A-Fa-f]{64}$")

# name -> (scenario, group, faults)
LAB_SERVERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ok1": ("healthy", "emea", ()),
    "ok2": ("healthy", "emea", ()),
    "iis": ("iis-binding", "apac", ()),
    "stopped": ("remoteaccess-stopped", "apac", ()),
    "foreign": ("foreign-process", "apac", ()),
    "noadmin": ("not-elevated", "misc", ()),
    "fix-iis": ("iis-binding", "fixes", ()),
    "fix-stopped": ("remoteaccess-stopped", "fixes", ()),
    "fix-healthy": ("healthy", "fixes", ()),
    "fix-noadmin": ("not-elevated", "fixes", ()),
    "fix-foreign": ("foreign-process", "fixes", ()),
    "fix-urlacl": ("urlacl-conflict", "fixes", ()),
    "fix-refused": ("iis-binding", "faults", ("refused",)),
    "fix-warn": ("iis-binding", "fixes", ()),
    "hist-stopped": ("remoteaccess-stopped", "history", ()),
    "fix-changed": ("iis-binding", "fixes", ()),
    "fix-fail": ("iis-binding", "fixes", ()),
    "fix-count": ("iis-binding", "fixes", ()),
    "offload": ("healthy", "offload", ()),
    "fix-tty-no": ("iis-binding", "fixes", ()),
    "fix-tty-no-json": ("iis-binding", "fixes", ()),
    "fix-tty-yes": ("remoteaccess-stopped", "fixes", ()),
    "fix-expiry": ("renewal-not-bound", "fixes", ()),
    "f-refused": ("healthy", "faults", ("refused",)),
    "f-auth": ("healthy", "faults", ("wrong_password",)),
    "f-tls": ("healthy", "faults", ("untrusted_tls",)),
    "f-slow": ("healthy", "faults", ("slow",)),
    "f-500": ("healthy", "faults", ("http_500",)),
    "f-wsman": ("healthy", "faults", ("wsman_fault",)),
    "f-script": ("healthy", "faults", ("script_error",)),
    "f-badjson": ("healthy", "faults", ("bad_json",)),
    "f-errstream": ("healthy", "faults", ("error_stream",)),
    "f-hang": ("healthy", "faults", ("hang",)),
    "fix-2p": ("remoteaccess-stopped", "fixes", ()),
}


# extra TOML lines per server
EXTRA_TOML: dict[str, list[str]] = {
    # every certificate of the lab expires within 2000 days: the re-check after the fix keeps a warning
    "fix-warn": ["cert_expiry_warning_days = 2000"],
}


def free_closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@dataclass
class Env:
    lab: object
    config: Path
    tmp: Path
    password: str
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, **overrides: str | None) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("SSTP_BOT_CONFIG", None)
        # the lab's NTLM user table is for the lab (server side) only: a real client has none, and
        # pyspnego would otherwise take credentials from it
        env.pop("NTLM_USER_FILE", None)
        env["PYTHONPATH"] = str(REPO)
        env.update(self.extra_env)
        for k, v in overrides.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def run(self, *args: str, config: Path | str | None = "default", env: dict[str, str] | None = None,
            cwd: Path | str | None = None, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "bot"]
        if config == "default":
            argv += ["--config", str(self.config)]
        elif config is not None:
            argv += ["--config", str(config)]
        argv += list(args)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=env if env is not None else self.env(), cwd=str(cwd or self.tmp), input=stdin)

    def requests_total(self) -> int:
        """Requests the lab's servers have answered. The servers that answer slowly or never (the
        timeout cases) are left out: a request an earlier test abandoned there may still be finishing."""
        late = {name for name, (_, _, faults) in LAB_SERVERS.items() if {"slow", "hang"} & set(faults)}
        return sum(len(s.requests) for name, s in self.lab.servers.items() if name not in late)


def write_inventory(lab, path: Path, db_url: str, closed_port: int, extra: str = "") -> Path:
    from commands.lab.lab import lab_ca_bundle

    lines = [
        "[slack]",
        'mode = "socket"',
        "approvers = []",
        "two_person_rule = false",
        "",
        "[database]",
        f'url = "{db_url}"',
        "",
        "[defaults]",
        'username = "LAB\\\\sstp-bot"',
        f'password_env = "{PW_VAR}"',
        'auth = "ntlm"',
        "verify_tls = true",
        "connect_timeout = 5",
        "operation_timeout = 30",
        "",
    ]
    for name, (_scenario, group, faults) in LAB_SERVERS.items():
        srv = lab.servers[name]
        lines += [
            f"[servers.{name}]",
            f'host = "{srv.host}"',
            f"port = {srv.port}",
            f'transport = "{srv.transport}"',
            'public_name = "vpn.example.com"',
            f'group = "{group}"',
            # DESIGN 11 [2]: the lab serves each server's SSTP port on a port of its own.
            f'client_endpoint = "{srv.client_endpoint}"',
        ]
        if srv.transport == "https":
            lines.append(f'ca_bundle = "{lab_ca_bundle()}"')
        lines += EXTRA_TOML.get(name, [])
        if "wrong_password" in faults:
            lines.append(f'password_env = "{WRONG_PW_VAR}"')
        if "slow" in faults or "hang" in faults:
            lines += ["operation_timeout = 1", "connect_timeout = 2"]
        lines.append("")
    # A server in the inventory whose port is closed on 127.0.0.1.
    lines += [
        "[servers.closed]",
        'host = "127.0.0.1"',
        f"port = {closed_port}",
        'transport = "http"',
        'public_name = "vpn.example.com"',
        'group = "faults"',
        "connect_timeout = 2",
        "",
    ]
    path.write_text("\n".join(lines) + extra, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def cli(tmp_path_factory) -> Env:
    from commands.lab import Lab
    from commands.lab.lab import LAB_PASSWORD

    tmp = tmp_path_factory.mktemp("contract_cli")
    faults = {n: list(f) for n, (_s, _g, f) in LAB_SERVERS.items() if f}
    lab = Lab(["healthy"], extra_servers=[(n, s) for n, (s, _g, _f) in LAB_SERVERS.items()], faults=faults)
    try:
        cfg = write_inventory(lab, tmp / "inventory.toml", f"sqlite:///{tmp / 'audit.db'}", free_closed_port())
        env = Env(lab=lab, config=cfg, tmp=tmp, password=LAB_PASSWORD,
                  extra_env={PW_VAR: LAB_PASSWORD, WRONG_PW_VAR: "definitely-not-it"})
        yield env
    finally:
        lab.stop()


def parse_json(proc: subprocess.CompletedProcess):
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as e:  # pragma: no cover - diagnostic
        raise AssertionError(f"stdout is not JSON ({e}); rc={proc.returncode}\nstdout={proc.stdout!r}\n"
                             f"stderr={proc.stderr!r}") from None


def parse_ts(value: str) -> datetime:
    assert isinstance(value, str)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_check_shape(obj) -> None:
    """Exactly the `check`/`diagnose` JSON object of DESIGN 7."""
    assert isinstance(obj, dict), obj
    assert set(obj) == {"server", "status", "checked_at", "findings", "plan", "error"}, sorted(obj)
    assert isinstance(obj["server"], str) and obj["server"]
    assert obj["status"] in STATUS_VALUES
    ts = parse_ts(obj["checked_at"])
    assert ts.tzinfo is not None
    assert isinstance(obj["findings"], list)
    for f in obj["findings"]:
        assert isinstance(f, dict)
        assert set(f) == {"id", "severity", "title", "detail", "evidence", "fixable"}, sorted(f)
        assert isinstance(f["id"], str) and re.fullmatch(r"[A-Z][A-Z0-9_]+", f["id"])
        assert f["severity"] in SEVERITIES
        assert isinstance(f["title"], str) and f["title"]
        assert isinstance(f["detail"], str)
        assert isinstance(f["evidence"], dict)
        assert isinstance(f["fixable"], bool)
    plan = obj["plan"]
    if plan is not None:
        assert isinstance(plan, dict)
        assert set(plan) == {"steps", "fingerprint"}, sorted(plan)
        assert isinstance(plan["steps"], list) and plan["steps"]
        for s in plan["steps"]:
            assert set(s) == {"action", "params", "description", "disruptive"}, sorted(s)
            assert isinstance(s["action"], str)
            assert isinstance(s["params"], dict)
            assert isinstance(s["description"], str) and s["description"]
            assert isinstance(s["disruptive"], bool)
        assert isinstance(plan["fingerprint"], str) and HEX64.match(plan["fingerprint"]), plan["fingerprint"]
    err = obj["error"]
    if err is None:
        assert obj["status"] in {"healthy", "unhealthy"}
        bad = [f for f in obj["findings"] if f["severity"] in {"critical", "warning"}]
        assert (obj["status"] == "healthy") == (not bad)
    else:
        assert isinstance(err, dict)
        assert set(err) == {"kind", "message"}, sorted(err)
        assert err["kind"] in ERROR_KINDS
        assert isinstance(err["message"], str) and err["message"]
        assert obj["status"] == "error"


def assert_fix_shape(obj) -> None:
    assert isinstance(obj, dict), obj
    assert set(obj) == {"server", "plan_id", "state", "steps", "before", "after"}, sorted(obj)
    assert isinstance(obj["server"], str)
    assert obj["plan_id"] is None or isinstance(obj["plan_id"], (int, str))
    assert obj["state"] is None or obj["state"] in {
        "PROPOSED", "APPROVED", "RUNNING", "SUCCEEDED", "FAILED", "REJECTED", "EXPIRED", "SUPERSEDED", "INTERRUPTED"}
    assert isinstance(obj["steps"], list)
    for s in obj["steps"]:
        assert set(s) == {"action", "ok", "changed", "detail"}, sorted(s)
        assert isinstance(s["action"], str)
        assert isinstance(s["ok"], bool)
        assert isinstance(s["changed"], bool)
        assert isinstance(s["detail"], str)
    assert_check_shape(obj["before"])
    if obj["after"] is not None:
        assert_check_shape(obj["after"])


def ids(obj) -> set[str]:
    return {f["id"] for f in obj["findings"]}
