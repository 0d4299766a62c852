"""The admin's CLI of issue 11 (DESIGN 7 [2]): output sized to the terminal with hashes whole, honest
interruptions, and the new commands and flags.

In-process through `bot.cli.main` against a loopback lab (real pypsrp, NTLM, message encryption);
the Ctrl-C test runs `python -m bot` as a child process and sends it a real SIGINT.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bot import __version__
from bot.cli import Environment, ExitStatus, build_parser, fail, main
from bot.cli import lab as lab_command
from commands.errors import ConfigError, UnknownServer
from commands.lab.lab import Lab

REPO = Path(__file__).resolve().parents[2]
# A token of hex digits ending one line, and one starting the next: together, a split hash.
HEX_RUN_END = re.compile(r"(?<![0-9A-Za-z])[0-9A-Fa-f]+$")
HEX_RUN_START = re.compile(r"^\s*([0-9A-Fa-f]+)(?![0-9A-Za-z])")
WHOLE_HASH = re.compile(r"(?:[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})")
ANY_HASH = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{64}|[0-9A-Fa-f]{40})(?![0-9A-Fa-f])")


class Tty(io.StringIO):
    """A stream that claims to be a terminal (an operator watching, or typing)."""

    def isatty(self) -> bool:
        return True


class InterruptingInput(Tty):
    """A terminal whose operator presses Ctrl-C at the prompt."""

    def readline(self, size: int | None = -1) -> str:
        raise KeyboardInterrupt


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Fleet:
    lab: Lab
    config: Path
    db: Path

    def cli(self, *argv: str, columns: int | None = 80, stdin: io.StringIO | None = None,
            stderr: io.StringIO | None = None) -> Run:
        out, err = io.StringIO(), stderr or io.StringIO()
        environ = {"COLUMNS": str(columns)} if columns else {}
        code = main(["--config", str(self.config), *argv],
                    Environment(stdout=out, stderr=err, stdin=stdin or io.StringIO(), environ=environ))
        return Run(int(code), out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("admin-cli")
    with Lab(["fleet", "iis-binding", "remoteaccess-stopped"], extra_servers=[("vpn-ctrlc", "iis-binding"),
                                                                                ("vpn-ttl", "iis-binding")]) as lab:
        db = tmp / "data" / "history.db"
        db.parent.mkdir()
        config = lab.write_config(tmp / "lab.toml", database_url=f"sqlite:///{db}")
        yield Fleet(lab, config, db)


def assert_fits(text: str, width: int) -> None:
    """No line longer than `width` but a line holding one whole hash; no hash split across lines."""
    lines = text.splitlines()
    assert lines, "no output"
    for line in lines:
        if len(line) > width:
            assert WHOLE_HASH.fullmatch(line.strip()), f"{len(line)} > {width}: {line!r}"
    for upper, lower in itertools.pairwise(lines):
        tail, head = HEX_RUN_END.search(upper), HEX_RUN_START.match(lower)
        if tail and head:
            assert len(tail.group()) + len(head.group(1)) < 40 or WHOLE_HASH.fullmatch(tail.group()), (upper, lower)


# -- 1. output sized to the terminal --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("width", "target"), [(80, "vpn02"), (60, "vpn-iis")])
def test_output_fits_the_terminal_and_hashes_stay_whole(fleet: Fleet, width: int, target: str) -> None:
    check = fleet.cli("check", "--all", columns=width)
    assert check.code == ExitStatus.FINDINGS
    assert_fits(check.out, width)
    # every thumbprint and hash of the JSON report appears whole in the text
    doc = fleet.cli("check", target, "--json").json()
    hashes = set(ANY_HASH.findall(json.dumps(doc["findings"])))  # the plan's fingerprint is shown abbreviated
    assert hashes
    report = fleet.cli("check", target, columns=width).out
    assert_fits(report, width)
    assert hashes <= set(ANY_HASH.findall(report))

    fix = fleet.cli("fix", target, "--yes", columns=width)
    assert fix.code == ExitStatus.OK, fix.err
    assert_fits(fix.out, width)
    plan_id = re.search(r"Plan (\d+): SUCCEEDED", fix.out)
    assert plan_id
    for argv in (("history",), ("history", target), ("history", "--plan", plan_id.group(1)), ("status",), ("servers",)):
        run = fleet.cli(*argv, columns=width)
        assert run.code == 0, (argv, run.err)
        assert_fits(run.out, width)


@pytest.mark.slow
@pytest.mark.parametrize("width", [80, 60])
def test_lab_and_demo_fit_the_terminal(tmp_path: Path, width: int) -> None:
    out = io.StringIO()
    env = Environment(stdout=out, stderr=io.StringIO(), environ={"COLUMNS": str(width)})
    args = build_parser().parse_args(["lab", "--write-config", str(tmp_path / "lab.toml")])
    stop = threading.Event()
    stop.set()  # start, print the banner, stop at once
    assert lab_command.run(args, env, stop=stop) == 0
    assert_fits(out.getvalue(), width)

    demo_out = io.StringIO()
    code = main(["demo"], Environment(stdout=demo_out, stderr=io.StringIO(), environ={"COLUMNS": str(width)}))
    assert code == 0
    assert_fits(demo_out.getvalue(), width)
    assert "Plan" in demo_out.getvalue() and "healthy again" in demo_out.getvalue()


def test_width_comes_from_columns_then_the_terminal_then_80() -> None:
    assert Environment(stdout=io.StringIO(), environ={"COLUMNS": "100"}).width == 100
    assert Environment(stdout=io.StringIO(), environ={}).width == 80  # piped or captured
    assert Environment(stdout=io.StringIO(), environ={"COLUMNS": "wide"}).width == 80


def test_fleet_check_ends_with_one_line_per_server(fleet: Fleet) -> None:
    names = ["vpn01", "vpn04", "vpn05"]
    run = fleet.cli("check", *names)
    docs = fleet.cli("check", *names, "--json").json()
    tail = run.out.splitlines()[-(len(names) + 2):]
    assert tail[0].split() == ["server", "status", "findings"]
    rows = [line.split() for line in tail[1:-1]]
    expected = {d["server"]: (d["status"].upper(), str(len(d["findings"]))) for d in docs}
    assert {row[0]: (row[1], row[2]) for row in rows} == expected
    assert tail[-1] == "1 of 3 servers healthy."


def test_progress_shows_only_on_a_terminal(fleet: Fleet) -> None:
    watched = Tty()
    run = fleet.cli("check", "vpn01", "vpn03", "vpn06", stderr=watched)
    assert "checked 0 of 3 servers" in watched.getvalue() and "checked 2 of 3" in watched.getvalue()
    assert "checked 2 of 3" not in run.out  # progress goes to stderr, never into the report
    logged = fleet.cli("check", "vpn01", "vpn03", "vpn06")
    assert logged.err == ""  # a log file or a pipe gets none of it


# -- 2. Ctrl-C ----------------------------------------------------------------------------------


def test_each_step_result_is_printed_as_the_step_ends_before_the_re_check(fleet: Fleet) -> None:
    """Issue 11: a step's result is on the screen when it ends, the last one included (not only after
    the re-check): each line is stamped with how many probes the server has answered by then."""
    twin = fleet.lab.servers["vpn-stopped"].twin
    original = twin.probe
    probes = {"n": 0}

    def counting(*args: Any, **kwargs: Any) -> Any:
        probes["n"] += 1
        return original(*args, **kwargs)

    class Stamped(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.stamps: list[tuple[int, str]] = []

        def write(self, text: str) -> int:
            self.stamps.append((probes["n"], text))
            return super().write(text)

    out = Stamped()
    twin.probe = counting  # type: ignore[method-assign]
    try:
        code = main(["--config", str(fleet.config), "fix", "vpn-stopped", "--yes"],
                    Environment(stdout=out, stderr=io.StringIO(), stdin=io.StringIO(), environ={"COLUMNS": "80"}))
    finally:
        twin.probe = original  # type: ignore[method-assign]
    assert code == ExitStatus.OK, out.getvalue()
    # The check's probe, then the fix's drift probe; the re-check's probe comes after the step ended.
    [stamp] = [n for n, text in out.stamps if "ok  restart_remoteaccess" in text]
    assert stamp == 2 and probes["n"] == 3, (stamp, probes, out.getvalue())


def test_ctrl_c_at_the_confirmation_prompt_is_recorded_as_a_no(fleet: Fleet) -> None:
    before = fleet.lab.servers["vpn05"].twin.copy_state()
    run = fleet.cli("fix", "vpn05", stdin=InterruptingInput())
    assert run.code == ExitStatus.INTERRUPTED
    assert "recorded as rejected" in run.out
    [plan] = [e for e in fleet.cli("history", "vpn05", "--json").json() if e["kind"] == "plan"][:1]
    assert plan["state"] == "REJECTED" and plan["step_results"] == []
    assert fleet.lab.servers["vpn05"].twin.copy_state() == before  # nothing ran


@pytest.mark.slow
def test_ctrl_c_during_a_fix_says_where_it_stopped_and_is_audited(fleet: Fleet) -> None:
    server = fleet.lab.servers["vpn-ctrlc"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}
    env.pop("NTLM_USER_FILE", None)  # the lab's user table is the server side's only
    child = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(fleet.config), "fix", "vpn-ctrlc", "--yes"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(fleet.config.parent),
    )
    seen: list[str] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            seen.append(line)
            if line.startswith("[2/"):
                # The server stops answering: step 2 (or the next) is in flight when Ctrl-C comes.
                server.endpoint.faults.delay = 5.0
                break
        # Step 1's result was printed (and flushed) while the process still runs.
        assert any("ok  remove_iis_binding" in line for line in seen), seen
        time.sleep(0.5)
        child.send_signal(signal.SIGINT)
        rest, err = child.communicate(timeout=30)
    finally:
        server.endpoint.faults.delay = 0.0
        if child.poll() is None:
            child.kill()
    out = "".join(seen) + rest
    assert child.returncode == ExitStatus.INTERRUPTED, (out, err)
    said = re.search(r"Interrupted during step (\d) of 5 \((\w+)\): vpn-ctrlc may be partly changed", out)
    assert said, out
    assert "sstp-bot check vpn-ctrlc" in out
    plan_id = next(e for e in fleet.cli("history", "vpn-ctrlc", "--json").json() if e["kind"] == "plan")["id"]
    trail = fleet.cli("history", "--plan", str(plan_id), "--json").json()
    [event] = [e for e in trail if e["outcome"] == "interrupted"]
    assert event["action"] == "fix" and event["details"]["step"] == int(said.group(1))
    [failed] = [e for e in trail if e["action"] == "fail"]  # the plan's end says why, not "internal error"
    assert "interrupted by the operator" in failed["details"]["error"]
    assert event["details"]["of"] == 5 and event["details"]["action"] == said.group(2)
    text = fleet.cli("history", "vpn-ctrlc").out
    assert "/5 steps ok" in text and "1/1 steps ok" not in text


# -- 3. contracts of the new flags ---------------------------------------------------------------


def test_version() -> None:
    out = io.StringIO()
    assert main(["--version"], Environment(stdout=out, stderr=io.StringIO(), environ={})) == 0
    assert out.getvalue().strip() == f"sstp-bot {__version__}"


def test_servers_json_carries_the_last_status(fleet: Fleet) -> None:
    fleet.cli("check", "vpn03")
    docs = {d["name"]: d for d in fleet.cli("servers", "--json").json()}
    assert set(docs) == set(fleet.lab.servers)
    for doc in docs.values():
        assert set(doc) == {"name", "host", "group", "public_name", "last_status", "last_checked_at"}
    assert docs["vpn03"]["last_status"] == "healthy" and docs["vpn03"]["last_checked_at"].endswith("Z")
    assert docs["vpn03"]["host"] == "127.0.0.1"


def test_save_snapshot_is_what_diagnose_reads(fleet: Fleet, tmp_path: Path) -> None:
    folder = tmp_path / "not" / "yet"
    checked = fleet.cli("check", "vpn04", "vpn06", "--save-snapshot", str(folder), "--json").json()
    assert sorted(p.name for p in folder.iterdir()) == ["vpn04.json", "vpn06.json"]
    for doc in checked:
        snapshot = json.loads((folder / f"{doc['server']}.json").read_text())
        run = fleet.cli("diagnose", "--snapshot", str(folder / f"{doc['server']}.json"),
                        "--server-name", doc["server"], "--json")
        diagnosed = run.json()
        assert {f["id"] for f in diagnosed["findings"]} == {f["id"] for f in doc["findings"]}
        # the report is dated when the snapshot was taken, not when it was read
        collected = datetime.fromisoformat(snapshot["collected_at"].replace("Z", "+00:00"))
        reported = datetime.fromisoformat(diagnosed["checked_at"].replace("Z", "+00:00"))
        assert abs((reported - collected).total_seconds()) < 1
    # an older snapshot is reported with its own date
    old = json.loads((folder / "vpn04.json").read_text())
    old["collected_at"] = "2026-01-02T03:04:05Z"
    (folder / "old.json").write_text(json.dumps(old))
    assert fleet.cli("diagnose", "--snapshot", str(folder / "old.json"), "--json").json()["checked_at"] == \
        "2026-01-02T03:04:05Z"


def test_status_is_the_latest_result_of_every_server(fleet: Fleet) -> None:
    fleet.cli("check", "vpn01")
    fleet.cli("check", "vpn06")
    docs = {d["server"]: d for d in fleet.cli("status", "--json").json()}
    assert docs["vpn01"]["status"] == "healthy" and docs["vpn06"]["status"] == "unhealthy"
    assert set(docs) == set(fleet.lab.servers)  # the never-checked ones too, with no status
    text = fleet.cli("status").out
    assert re.search(r"^vpn06  UNHEALTHY", text, re.M) and re.search(r"^vpn01  HEALTHY", text, re.M)


def test_a_sqlite_database_in_a_missing_folder_is_a_config_error(fleet: Fleet, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    config = tmp_path / "sstp-bot.toml"
    text = fleet.config.read_text()
    text = re.sub(r'url = "[^"]*"', f'url = "sqlite:///{missing}/x.db"', text)
    config.write_text(text)
    for argv in (["check", "vpn01"], ["history"], ["status"], ["servers", "--json"], ["fix", "vpn01", "--yes"],
                 ["db", "prune", "--older-than", "1"], ["sweep"], ["sweep", "--json"], ["forecast"],
                 ["forecast", "--json"]):
        err = io.StringIO()
        code = main(["--config", str(config), *argv], Environment(stdout=io.StringIO(), stderr=err, environ={}))
        assert code == ExitStatus.ERROR, argv
        assert str(missing) in err.getvalue() and "database.url" in err.getvalue()
        assert not missing.exists()
    out = io.StringIO()
    code = main(["--config", str(config), "history", "--json"], Environment(stdout=out, stderr=io.StringIO(), environ={}))
    assert code == 2 and json.loads(out.getvalue())["error"]["kind"] == "config"
    assert main(["--config", str(config), "db", "upgrade"], Environment(stdout=io.StringIO(), environ={})) == 0
    assert (missing / "x.db").exists()


# -- 4. help, suggestions -------------------------------------------------------------------------


def test_help_shows_examples_and_exit_codes() -> None:
    commands = ("check", "diagnose", "fix", "status", "history", "servers", "serve", "db", "lab", "demo", "sweep",
                "forecast", "endpoint", "db upgrade", "db prune", "db interrupt", "endpoint export")
    for argv in (["--help"], *([*name.split(), "--help"] for name in commands)):
        out = io.StringIO()
        assert main(argv, Environment(stdout=out, stderr=io.StringIO(), environ={})) == 0
        assert "examples:" in out.getvalue() and "130" in out.getvalue() and "exit status" in out.getvalue(), argv
        # Only the commands that judge servers can end with 1 (findings).
        judging = argv[0] in ("--help", "check", "diagnose", "fix", "sweep")
        assert ("1    findings" in out.getvalue()) is judging, argv


def test_a_mistyped_command_or_server_gets_a_suggestion(fleet: Fleet) -> None:
    err = io.StringIO()
    assert main(["chek", "vpn01"], Environment(stdout=io.StringIO(), stderr=err, environ={})) == ExitStatus.USAGE
    assert "Did you mean 'check'?" in err.getvalue()
    run = fleet.cli("check", "vpn-iiss")
    assert run.code == ExitStatus.ERROR and "Did you mean 'vpn-iis'?" in run.err
    assert "Did you mean" not in fleet.cli("check", "zzzzzz").err


# -- 5. wording ----------------------------------------------------------------------------------


def test_the_lab_suggests_fixing_a_broken_server(tmp_path: Path) -> None:
    out = io.StringIO()
    env = Environment(stdout=out, stderr=io.StringIO(), environ={"COLUMNS": "200"})
    args = build_parser().parse_args(["lab", "--scenario", "healthy", "iis-binding",
                                      "--write-config", str(tmp_path / "lab.toml")])
    stop = threading.Event()
    stop.set()
    lab_command.run(args, env, stop=stop)
    assert re.search(r"fix vpn-iis$", out.getvalue(), re.M)
    assert "fix vpn-healthy" not in out.getvalue()


def test_the_plan_title_counts_the_users_it_drops() -> None:
    from bot.terminal import plan_title
    from commands.model import Plan, Step

    disruptive = Plan(steps=(Step(action="restart_remoteaccess", params={}, description="d", disruptive=True),),
                      fingerprint="f" * 64)
    quiet = Plan(steps=(Step(action="restart_iis", params={}, description="d", disruptive=False),), fingerprint="f")
    assert plan_title(disruptive, 0) == "Plan"
    assert plan_title(disruptive, 1) == "Plan (drops the 1 connected VPN user)"
    assert plan_title(disruptive, 12) == "Plan (drops the 12 connected VPN users)"
    assert plan_title(disruptive, None) == "Plan (may drop connected VPN users)"
    assert plan_title(quiet, 12) == "Plan"


def test_the_audit_trail_leaves_out_missing_values() -> None:
    from bot.cli.history import _details_text

    text = _details_text({"action": "restart_iis", "ok": True, "exit_code": None})
    assert "exit_code" not in text and "None" not in text and "action=restart_iis" in text


def test_serve_starts_without_migration_or_token_noise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from bot.cli import serve
    from tests.fakes.healthz import wait_for_healthz
    from tests.fakes.slack_api import FakeSlackApi

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "xoxb-1111-2222-admincli"
    monkeypatch.setenv("SLACK_BOT_TOKEN", token)  # bolt reads it from the process environment too
    with FakeSlackApi() as api:
        config = tmp_path / "sstp-bot.toml"
        config.write_text(f'[slack]\nmode = "http"\napi_url = "{api.url}"\nhttp_port = {port}\n'
                          f'[database]\nurl = "sqlite:///{tmp_path}/h.db"\n[servers.vpn01]\nhost = "127.0.0.1"\n')
        args = build_parser().parse_args(["--config", str(config), "serve"])
        out, err = io.StringIO(), io.StringIO()
        env = Environment(stdout=out, stderr=err, environ={"SLACK_BOT_TOKEN": token, "SLACK_SIGNING_SECRET": "s" * 32})
        stop = threading.Event()
        thread = threading.Thread(target=serve.run, args=(args, env), kwargs={"stop": stop}, daemon=True)
        thread.start()
        try:
            wait_for_healthz(f"http://127.0.0.1:{port}")
        finally:
            stop.set()
            thread.join(timeout=15)
    assert "HTTP mode" in out.getvalue()
    assert "alembic" not in err.getvalue().lower() and "Context impl" not in err.getvalue()
    assert "will be unused" not in err.getvalue()


# -- 6. the edge ---------------------------------------------------------------------------------


def test_exit_statuses_are_named() -> None:
    assert [(s.name, int(s)) for s in ExitStatus] == [
        ("OK", 0), ("FINDINGS", 1), ("ERROR", 2), ("USAGE", 3), ("INTERRUPTED", 130), ("BROKEN_PIPE", 141)]


def test_one_edge_turns_errors_into_exit_codes_and_the_json_document() -> None:
    def edge(exc: BaseException, json_mode: bool) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        args = argparse.Namespace(json=json_mode)
        code = fail(exc, Environment(stdout=out, stderr=err, environ={}), args)
        return code, out.getvalue(), err.getvalue()

    assert edge(KeyboardInterrupt(), True)[0] == ExitStatus.INTERRUPTED
    assert edge(BrokenPipeError(), False)[0] == ExitStatus.BROKEN_PIPE
    code, out, err = edge(ConfigError("bad key"), True)
    assert code == ExitStatus.ERROR and json.loads(out) == {"error": {"kind": "config", "message": "bad key"}}
    assert err == "error: bad key\n"
    code, out, err = edge(UnknownServer("vpn1", ["vpn01", "vpn02"]), False)
    assert code == 2 and out == "" and "Did you mean 'vpn01'?" in err
    code, out, err = edge(RuntimeError("postgresql://u:hunter2@db/x"), True)
    assert code == 2 and out == "" and "hunter2" not in err and "unexpected RuntimeError" in err


def test_text_from_a_server_cannot_drive_the_terminal() -> None:
    """A compromised server controls site names, certificate subjects and error records: printed,
    their escape sequences would clear the screen, rewrite lines, retitle the window or hide the fix
    confirmation. Every character a terminal acts on is shown as U+FFFD instead (JSON escapes them)."""
    from datetime import UTC, datetime

    from bot.cli.forecast import render_text
    from bot.operations import CertificateForecast, Forecast
    from bot.terminal import make_console, render_check
    from commands.errors import visible
    from commands.model import CheckResult, Finding

    evil = "Default Web Site\x1b[2K\x1b[1A\x1b]0;owned\x1b\\ \x9b2J \u202eexe.txt\x07\r"
    result = CheckResult(server="vpn01", checked_at=datetime(2026, 12, 6, tzinfo=UTC), findings=[
        Finding(id="IIS_HTTPS_BINDING", severity="critical", title=f"IIS site {evil!s}", detail=evil,
                evidence={"site": evil})])
    out = io.StringIO()
    render_check(result, make_console(out, 80))
    printed = out.getvalue()
    assert "Default Web Site" in printed and "\ufffd" in printed
    for control in ("\x1b", "\x9b", "\u202e", "\x07", "\r"):
        assert control not in printed, repr(control)
    cert = CertificateForecast(server="vpn01", thumbprint="A" * 40, subject=f"CN=vpn.example.com{evil}",
                               not_after=datetime(2027, 1, 1, tzinfo=UTC), days_left=26, renewal_in_store=False,
                               warning_days=30)
    text = visible(render_text(Forecast(certificates=[cert], unknown=[]), None))
    assert "\x1b" not in text and "CN=vpn.example.com" in text
    assert visible("tab\tand\nnewline") == "tab\tand\nnewline"


def test_a_terminal_that_reports_no_size_gets_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pty whose size was never set reports 0 columns: that is unknown, not 20 (the minimum)."""
    import os as _os

    from bot.terminal import DEFAULT_WIDTH, terminal_width

    class Pty(Tty):
        def fileno(self) -> int:
            return 1

    monkeypatch.setattr(_os, "get_terminal_size", lambda fd=0: _os.terminal_size((0, 0)))
    assert terminal_width({}, Pty()) == DEFAULT_WIDTH
    monkeypatch.setattr(_os, "get_terminal_size", lambda fd=0: _os.terminal_size((132, 40)))
    assert terminal_width({}, Pty()) == 132
    assert terminal_width({"COLUMNS": "60"}, Pty()) == 60


def test_a_plan_past_its_time_reads_as_expired_without_waiting_for_a_check(fleet: Fleet) -> None:
    """DESIGN 6: a plan expires after plan_ttl_minutes. Reading the history after that shows it
    EXPIRED (with its audit event), not still PROPOSED until some later check."""
    from datetime import UTC, datetime, timedelta

    fleet.cli("check", "vpn-ttl")  # a server with findings, this test's own: one plan
    plan_id = next(e for e in fleet.cli("history", "vpn-ttl", "--json").json() if e["kind"] == "plan")["id"]
    later = datetime.now(UTC) + timedelta(hours=2)
    out = io.StringIO()
    code = main(["--config", str(fleet.config), "history", "--plan", str(plan_id), "--json"],
                Environment(stdout=out, stderr=io.StringIO(), environ={}, clock=lambda: later))
    assert code == 0
    assert [e for e in json.loads(out.getvalue()) if e["action"] == "expire"]
    text = io.StringIO()
    main(["--config", str(fleet.config), "history", "--plan", str(plan_id)],
         Environment(stdout=text, stderr=io.StringIO(), environ={"COLUMNS": "200"}, clock=lambda: later))
    assert f"Plan {plan_id} for vpn-ttl: EXPIRED" in text.getvalue()
