"""The WinRM password never shows: not in CLI output, logs, or the SQLite file (DESIGN 7: secrets only
from the environment or a password file).

Runs its own full story (check, fix, history, an auth failure), with the password taken once from a
file and once from an environment variable, and then also scans every CLI output and every database
that the scenario tests before it produced in this session (conftest.CLI_OUTPUTS / DATABASES).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from commands.lab.lab import LAB_PASSWORD, WRONG_PASSWORD

from .conftest import CLI_OUTPUTS, DATABASES, LabSetup

SECRETS = (LAB_PASSWORD, WRONG_PASSWORD)


def secret_forms(secret: str) -> list[bytes]:
    return [secret.encode("utf-8"), secret.encode("utf-16-le"), secret.encode("utf-8").hex().encode()]


def database_files(db: Path) -> list[Path]:
    return [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-journal"), Path(f"{db}-shm")) if p.exists()]


def assert_no_secret_in_database(db: Path) -> None:
    for path in database_files(db):
        data = path.read_bytes()
        for secret in SECRETS:
            for form in secret_forms(secret):
                assert form not in data, f"{path} holds the lab password"


def assert_no_secret_in_text(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"the lab password appears in {where}"


def story(setup: LabSetup) -> list[str]:
    outputs = []
    for argv in (
        ["check", "--all", "--json"],
        ["check", "--all"],
        ["check", "f-wrong", "--json"],
        ["check", "f-wrong"],
        ["fix", "vpn-iis", "--yes", "--json"],
        ["fix", "vpn-stopped", "--yes"],
        ["history", "--json"],
        ["history"],
        ["history", "--plan", "1"],
        ["history", "--plan", "1", "--json"],
        ["servers"],
    ):
        run = setup.cli(*argv)
        outputs.append(run.stdout + run.stderr)
    return outputs


@pytest.mark.slow
@pytest.mark.parametrize("source", ["password_file", "password_env"])
def test_password_never_in_output_logs_or_database(lab_factory, caplog, source: str):
    caplog.set_level(logging.DEBUG)
    setup: LabSetup = lab_factory(
        ["iis-binding", "remoteaccess-stopped"], faults={"f-wrong": ["wrong_password"]},
        extra_servers=[("f-wrong", "iis-binding")],
    )
    if source == "password_env":
        text = setup.config_path.read_text(encoding="utf-8")
        text, n = re.subn(r'(?m)^password_file = ".*lab-password"$', 'password_file = ""', text)
        assert n == 1
        text = text.replace('password_env = ""', 'password_env = "SSTP_BOT_WINRM_PASSWORD"', 1)
        # f-wrong's own wrong password, from its own variable (password_env is read before password_file).
        text, n = re.subn(r'(?m)^password_file = ".*lab-wrong-password"$', 'password_env = "WRONG_PW"', text)
        assert n == 1
        setup.config_path.write_text(text, encoding="utf-8")
        setup.environ.update(SSTP_BOT_WINRM_PASSWORD=LAB_PASSWORD, WRONG_PW=WRONG_PASSWORD)
        config = setup.config()
        assert config.server("vpn-iis").password_env == "SSTP_BOT_WINRM_PASSWORD"
        assert config.server("f-wrong").password(setup.environ) == WRONG_PASSWORD

    outputs = story(setup)
    # The story really ran: a fix happened, and the wrong password was refused as an auth error.
    history = setup.cli("history", "--json").json()
    assert any(e["kind"] == "plan" and e["state"] == "SUCCEEDED" for e in history)
    assert any(e["kind"] == "check" and (e["error"] or {}).get("kind") == "auth" for e in history)

    for i, text in enumerate(outputs):
        assert_no_secret_in_text(text, f"CLI output #{i}")
    assert_no_secret_in_text(caplog.text, "the logs")
    assert_no_secret_in_database(setup.db_path)


def test_no_earlier_scenario_leaked_the_password():
    """Every CLI output and database of this session's scenario tests (run before this file)."""
    assert CLI_OUTPUTS, "the scenario tests record their CLI output in conftest.CLI_OUTPUTS"
    for i, text in enumerate(CLI_OUTPUTS):
        assert_no_secret_in_text(text, f"CLI output #{i} of the session")
    for db in DATABASES:
        if db.exists():
            assert_no_secret_in_database(db)
