"""The real stack for Slack scenario tests: lab servers (real WinRM/PSRP on 127.0.0.1), the real
`bot.service.Service` on a fresh SQLite file, the real bolt app, and the fake Slack Web API.

    with Lab(["iis-binding"]) as lab:
        stack = LabStack.build(lab, tmp_path, slack_api, approvers=(APPROVER,))
        stack.harness.command("check vpn-iis")
        stack.scripts["vpn-iis"]            # every script the lab server received, by name, in order
        stack.fix_scripts("vpn-iis")        # the same without the probes
        stack.commands("vpn-iis")           # WS-Man Command requests in the endpoint's request log
        stack.close()

`ScriptRecorder` wraps each lab endpoint's script executor, so a test sees exactly which shipped
scripts reached a server over PSRP (the request log itself only names WS-Man actions).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.config import Config, load_config
from bot.service import Service, build_service
from commands.lab import Lab
from commands.scripts import script_name
from tests.fakes.blockkit import assert_slack_limits, buttons
from tests.fakes.harness import Harness, build_harness
from tests.fakes.slack_api import FakeSlackApi

OUTGOING = ("chat.postMessage", "chat.update", "chat.postEphemeral", "response_url")


class FakeClock:
    """A UTC clock that only moves when told (`advance`)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, **delta: float) -> None:
        with self._lock:
            self.now = self.now + timedelta(**delta)


SEQUENCE_SCRIPTS = ("control_remoteaccess", "remoteaccess_state", "add_sstp_httpsys_binding", "probe")


def as_plan_steps(names: list[str]) -> list[str]:
    """Recorded scripts of a check + fix (probe, probe, steps..., re-probe) with the primitives of the
    executor's sequences folded back into their plan steps (DESIGN 9 [2]): `set_sstp_certificate` and
    what follows is `bind_sstp_certificate`; a `control_remoteaccess` group alone is `restart_remoteaccess`."""
    return names[:2] + fold_sequences(names[2:-1]) + names[-1:]


def fold_sequences(names: list[str]) -> list[str]:
    """Plan steps of recorded fix scripts (no check or re-check probes among them)."""
    steps: list[str] = []
    in_sequence = False
    for name in names:
        if name == "set_sstp_certificate":
            steps.append("bind_sstp_certificate")
            in_sequence = True
        elif name in SEQUENCE_SCRIPTS:
            if not in_sequence:
                steps.append("restart_remoteaccess")
                in_sequence = True
        else:
            steps.append(name)
            in_sequence = False
    return steps


class ScriptRecorder:
    """Records the name of every script each lab server runs (wraps the endpoint's executor)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self._lock = threading.Lock()
        self.scripts: dict[str, list[str]] = {name: [] for name in lab.servers}
        for name, server in lab.servers.items():
            server.endpoint.executor = self._wrap(name, server.endpoint.executor)

    def _wrap(self, server: str, executor: Callable[..., Any]) -> Callable[..., Any]:
        if getattr(executor, "_sstp_recorder", None) is self:
            return executor

        def run(text: str, params: dict[str, Any], **options: Any) -> Any:
            with self._lock:
                self.scripts[server].append(script_name(text) or "?")
            return executor(text, params, **options)  # options: the command's local_scope

        run._sstp_recorder = self  # type: ignore[attr-defined]
        return run

    def clear(self) -> None:
        with self._lock:
            for names in self.scripts.values():
                names.clear()


@dataclass
class LabStack:
    lab: Lab
    config: Config
    service: Service
    harness: Harness
    slack_api: FakeSlackApi
    recorder: ScriptRecorder
    clock: Callable[[], datetime]

    @classmethod
    def build(
        cls,
        lab: Lab,
        tmp_path: Path,
        slack_api: FakeSlackApi,
        *,
        recorder: ScriptRecorder | None = None,
        clock: Callable[[], datetime] | None = None,
        **slack: Any,
    ) -> LabStack:
        """A fresh database and service on `lab`; `slack` overrides `[slack]` keys (approvers, ...)."""
        db = tmp_path / "sstp-bot.db"
        config = load_config(lab.write_config(tmp_path / "lab.toml", database_url=f"sqlite:///{db}"), {})
        config = replace(config, slack=replace(config.slack, **slack))
        clock = clock or (lambda: datetime.now(UTC))
        service = build_service(config, {}, clock)
        recorder = recorder or ScriptRecorder(lab)
        recorder.clear()
        lab.clear_logs()
        harness = build_harness(service, config, slack_api)
        return cls(lab, config, service, harness, slack_api, recorder, clock)

    def close(self) -> None:
        self.harness.close()
        self.service.repo.close()

    # --- what reached the lab ------------------------------------------------------------------
    @property
    def scripts(self) -> dict[str, list[str]]:
        return self.recorder.scripts

    def fix_scripts(self, server: str | None = None) -> list[str]:
        names = self.lab.servers if server is None else [server]
        # The executor's sequences (DESIGN 9 [2]) are folded back into the plan steps they carry out.
        return [s for n in names for s in fold_sequences([x for x in self.recorder.scripts[n] if x != "probe"])]

    def commands(self, server: str) -> int:
        """WS-Man Command requests (one per script) in the lab server's request log."""
        return sum(1 for r in self.lab.servers[server].requests if r.action == "Command")

    def lab_requests(self) -> int:
        return sum(len(s.requests) for s in self.lab.servers.values())

    # --- what Slack received -------------------------------------------------------------------
    def plan_from_last_report(self) -> tuple[int, str]:
        """(plan id, card ts) of the newest report with buttons."""
        for call in reversed(self.slack_api.calls_to("chat.update") + self.slack_api.calls_to("chat.postMessage")):
            found = buttons(call.body)
            if found:
                plan_id = int(found[0]["value"])
                plan = self.service.get_plan(plan_id)
                assert plan.message_ts is not None
                return plan_id, plan.message_ts
        raise AssertionError("no report with Approve/Reject was posted")

    def updates_of(self, ts: str) -> list[dict[str, Any]]:
        return [c.body for c in self.slack_api.calls_to("chat.update") if c.body.get("ts") == ts]

    def ephemerals(self, user: str | None = None) -> list[dict[str, Any]]:
        return [c.body for c in self.slack_api.calls_to("chat.postEphemeral") if user is None or c.body.get("user") == user]

    def audit(self, plan_id: int) -> list[tuple[str, str, str]]:
        """(action, actor, outcome) of every audit event of a plan, oldest first."""
        return [(a.action, a.actor, a.outcome) for a in self.service.plan_audit(plan_id)]


def assert_every_message_within_limits(slack_api: FakeSlackApi, methods: Iterable[str] = OUTGOING) -> int:
    """Validate every outgoing message body the fake Web API received; returns how many."""
    checked = 0
    for method in methods:
        for call in slack_api.calls_to(method):
            assert_slack_limits(call.body)
            checked += 1
    return checked
