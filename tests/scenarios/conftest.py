"""End-to-end scenario fixtures: a running loopback lab, its inventory, and the CLI run in-process.

Everything here goes through the real stack: `bot.cli.main` -> `bot.service` -> `commands.psrp`
(pypsrp, NTLM, message encryption) -> the lab's WinRM endpoint -> the RRAS twin, and back into
SQLite through `storage`. Nothing is mocked; only 127.0.0.1 is used.
"""

from __future__ import annotations

import getpass
import io
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.cli import Environment, main
from bot.config import Config, load_config
from bot.service import Actor, Service, build_service
from commands.lab.lab import Lab
from commands.lab.scenarios import load_scenario, scenario_names

# Every CLI output and every database file of the session, for the secrets test (test_secrets.py).
CLI_OUTPUTS: list[str] = []
DATABASES: list[Path] = []

SINGLE_SCENARIOS = [n for n in scenario_names() if not load_scenario(n).is_fleet]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "subprocess: starts `python -m bot` as a child process (run by default)")


class TtyInput(io.StringIO):
    """Standard input that claims to be a terminal (an operator typing the answer)."""

    def isatty(self) -> bool:
        return True


@dataclass
class CliRun:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __iter__(self) -> Iterator[Any]:  # `code, out, err = run_cli(...)`
        return iter((self.code, self.stdout, self.stderr))


class FakeClock:
    """A clock the test moves by hand; starts at the real time (the lab issues certificates now).

    With `tick`, every reading moves it on by that many seconds (distinct, ordered times).
    """

    def __init__(self, start: datetime | None = None, *, tick: float = 0.0) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)
        self.tick = timedelta(seconds=tick)

    def __call__(self) -> datetime:
        now = self.now
        self.now += self.tick
        return now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def run_cli(
    argv: Sequence[str],
    *,
    stdin: str = "",
    interactive: bool = False,
    environ: Mapping[str, str] | None = None,
    clock: Any = None,
) -> CliRun:
    """`bot.cli.main(argv)` with captured output; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    env = Environment(
        stdout=out,
        stderr=err,
        stdin=TtyInput(stdin) if interactive else io.StringIO(stdin),
        environ=dict(environ or {}),
    )
    if clock is not None:
        env.clock = clock
    code = main(list(argv), env)
    run = CliRun(int(code), out.getvalue(), err.getvalue())
    CLI_OUTPUTS.append(run.stdout + run.stderr)
    return run


def cli_login() -> str:
    return f"cli:{getpass.getuser()}"


@dataclass
class LabSetup:
    """A running lab plus the inventory and database the bot uses for it."""

    lab: Lab
    config_path: Path
    db_path: Path
    environ: dict[str, str] = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def cli(self, *argv: str, **kwargs: Any) -> CliRun:
        return run_cli(["--config", str(self.config_path), *argv], environ=self.environ, **kwargs)

    def config(self) -> Config:
        return load_config(self.config_path, self.environ)

    def service(self, *, clock: Any = None, **slack: Any) -> Service:
        """The production wiring (`build_service`) on this inventory; `slack` overrides [slack] keys."""
        config = self.config()
        if slack:
            config = replace(config, slack=replace(config.slack, **slack))
        return build_service(config, self.environ, clock or (lambda: datetime.now(UTC)))

    def server(self, name: str) -> Any:
        return self.lab.servers[name]

    def clear_logs(self) -> None:
        self.lab.clear_logs()

    def actions(self, name: str) -> Counter[str]:
        """WS-Man request actions the server answered since its log was last cleared."""
        return Counter(r.action for r in self.lab.servers[name].requests)

    def total_requests(self) -> int:
        return sum(len(s.requests) for s in self.lab.servers.values())

    def name_of(self, scenario: str) -> str:
        return next(n for n, s in self.lab.servers.items() if s.spec.scenario == scenario)


def make_setup(lab: Lab, folder: Path) -> LabSetup:
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "x.db"
    config_path = lab.write_config(folder / "lab.toml", database_url=f"sqlite:///{db}")
    DATABASES.append(db)
    return LabSetup(lab, config_path, db)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabSetup]:
    """Read-mostly lab (module scoped): the fleet scenario. Tests on it must not change twins."""
    with Lab(["fleet"]) as lab:
        yield make_setup(lab, tmp_path_factory.mktemp("fleet"))


@pytest.fixture
def lab_factory(tmp_path: Path) -> Iterator[Any]:
    """Function-scoped labs for tests that change servers (fixes): `lab_factory(["iis-binding"])`."""
    labs: list[Lab] = []

    def start(scenarios: Sequence[str], **kwargs: Any) -> LabSetup:
        lab = Lab(list(scenarios), **kwargs)
        labs.append(lab)
        return make_setup(lab, tmp_path / f"lab{len(labs)}")

    yield start
    for lab in labs:
        lab.stop()


SLACK_REQUESTER = Actor(id="UREQUEST1", source="slack")
SLACK_APPROVER = Actor(id="UAPPROVE2", source="slack")
SLACK_OUTSIDER = Actor(id="UOUTSIDE3", source="slack")
APPROVERS = (SLACK_REQUESTER.id, SLACK_APPROVER.id)


def is_approver(service: Service, actor: Actor) -> bool:
    """What the Slack layer computes before calling approve(): is the user a configured approver?"""
    return actor.id in service.config.slack.approvers
