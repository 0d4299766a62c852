"""The test suite itself: the README's command is what CI runs, in parallel, and collection is the
same in every process (pytest-xdist workers must collect identical test ids)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_readme_test_command_is_what_ci_runs() -> None:
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in quick.strip().splitlines()]
    assert len(commands) == 2 and "bot demo" in commands[0]  # the two set-up commands
    readme_pytest = commands[1].split("&&", 1)[1].strip().removeprefix("python3 ")
    ci = (REPO / ".ci" / "run").read_text()
    ci_pytest = [line.split("#", 1)[0].strip().removeprefix("python3 ")
                 for line in ci.splitlines() if "-m pytest" in line and not line.lstrip().startswith("#")]
    assert ci_pytest == [readme_pytest]
    assert "-n " in readme_pytest  # in parallel (pytest-xdist)
    assert re.search(r'if \[ "\$status" -eq 5 \]; then', ci) and "exit 1" in ci  # no test collected fails


def test_no_test_id_depends_on_the_process(request: pytest.FixtureRequest) -> None:
    """A test id holding a PID breaks pytest-xdist ("Different tests were collected between gw0 and
    gw1"): every worker must collect the same ids. Checked over everything this session collected."""
    pid = re.compile(rf"(?<!\d){os.getpid()}(?!\d)")
    assert request.session.items
    assert [item.nodeid for item in request.session.items if pid.search(item.nodeid)] == []
