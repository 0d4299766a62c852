"""The bot through a JEA endpoint (DESIGN 12), end to end against the lab's JEA mode.

Real pypsrp (NTLM, message encryption, PSRP) talks to lab servers that accept only the `SstpBot`
configuration, refuse script text as a NoLanguage session does, and run the module's functions. The
lab logs every pipeline it receives (`server.jea.invocations`), so these tests assert that no script
text reached a server.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from bot.cli import Environment, main
from bot.config import load_config
from bot.service import Actor, build_service
from commands.errors import RemoteError
from commands.jea import function_name, module_version
from commands.lab.jea import NO_LANGUAGE_MESSAGE, NOT_RECOGNIZED_MESSAGE
from commands.lab.lab import LAB_PASSWORD, LAB_USERNAME, Lab
from commands.lab.scenarios import load_scenario, scenario_names
from commands.psrp import RemoteSession
from tests.fakes.lab_stack import fold_sequences

SINGLE = [n for n in scenario_names() if not load_scenario(n).is_fleet]
# Scenarios a plan heals (those with a RemoteAccess fault or DirectAccess end otherwise: test_fix_faults.py).
FIXABLE = [
    n
    for n in SINGLE
    if (spec := load_scenario(n).servers[0]).fixable and spec.expect and spec.fix_outcome is None
]


@dataclass
class Setup:
    lab: Lab
    config: Path

    def cli(self, *argv: str) -> tuple[int, Any, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(["--config", str(self.config), *argv], Environment(stdout=out, stderr=err, environ={}))
        text = out.getvalue()
        return int(code), json.loads(text) if "--json" in argv else text, err.getvalue()


def start(tmp_path: Path, scenarios: list[str], **kwargs: Any) -> Setup:
    lab = Lab(scenarios, **kwargs)
    try:
        config = lab.write_config(tmp_path / "lab.toml", database_url=f"sqlite:///{tmp_path / 'x.db'}")
    except BaseException:
        lab.stop()
        raise
    return Setup(lab, config)


@pytest.fixture
def iis(tmp_path: Path) -> Iterator[Setup]:
    setup = start(tmp_path, ["iis-binding"], jea=True)
    yield setup
    setup.lab.stop()


def pool(lab: Lab, name: str, configuration: str = "SstpBot") -> RunspacePool:
    server = lab.servers[name]
    wsman = WSMan(server.host, port=server.port, username=LAB_USERNAME, password=LAB_PASSWORD, ssl=False,
                  auth="ntlm", encryption="always", operation_timeout=5, read_timeout=10, no_proxy=True)
    return RunspacePool(wsman, configuration_name=configuration)


def error_of(ps: PowerShell) -> tuple[str, str]:
    assert ps.had_errors
    record = ps.streams.error[0]
    return str(record.exception.adapted_properties["Message"]), str(record.fq_error)


@pytest.mark.slow
def test_check_and_fix_heal_every_fixable_scenario_with_no_script_text(tmp_path: Path) -> None:
    assert len(FIXABLE) >= 10
    setup = start(tmp_path, FIXABLE, jea=True)
    try:
        assert load_config(setup.config, {}).server(next(iter(setup.lab.servers))).configuration_name == "SstpBot"
        for name, server in setup.lab.servers.items():
            code, check, _ = setup.cli("check", name, "--json")
            assert code == 1 and check["status"] == "unhealthy" and check["plan"], (name, check)
            code, fix, err = setup.cli("fix", name, "--yes", "--json")
            assert code == 0 and fix["state"] == "SUCCEEDED", (name, fix["steps"], err)
            assert fix["after"]["status"] == "healthy", (name, fix["after"]["findings"])
            assert server.jea is not None
            log = server.jea.invocations
            assert server.jea.scripts_received == 0 and all(i.accepted for i in log), name
            ran = [i.script for i in log if i.script != "probe"]
            # The executor carries out bind/restart steps as sequences of primitives (DESIGN 9 [2]).
            assert fold_sequences(ran) == [
                step["action"] for step in check["plan"]["steps"]
            ], name
            assert {i.command for i in log} == {function_name(s) for s in {"probe", *ran}}
    finally:
        setup.lab.stop()


def test_the_probe_through_jea_reports_the_endpoint(iis: Setup) -> None:
    name = next(iter(iis.lab.servers))
    with RemoteSession(iis.lab.server_config(name), LAB_PASSWORD) as session:
        snapshot = session.probe()
    assert snapshot["endpoint"] == {"configuration_name": "SstpBot", "module_version": module_version(),
                                    "language_mode": "NoLanguage"}
    server = iis.lab.servers[name]
    assert server.jea is not None and [i.command for i in server.jea.invocations] == ["Invoke-SstpBotProbe"]


def test_script_text_is_refused_as_in_no_language_mode(iis: Setup) -> None:
    name = next(iter(iis.lab.servers))
    server = iis.lab.servers[name]
    with pool(iis.lab, name) as rp:
        ps = PowerShell(rp)
        ps.add_script("# sstp-bot-script: probe\nparam([int]$EventHours = 24)\nGet-Date")
        ps.invoke()
        assert error_of(ps) == (NO_LANGUAGE_MESSAGE, "ScriptsNotAllowed")
        assert ps.output == []
    assert server.jea is not None and server.jea.scripts_received == 1
    assert server.twin.actions == []


@pytest.mark.parametrize("command", ["Get-Service", "Invoke-Expression", "Invoke-SstpBot", "netsh.exe"])
def test_a_command_the_role_does_not_expose_is_not_recognized(iis: Setup, command: str) -> None:
    name = next(iter(iis.lab.servers))
    with pool(iis.lab, name) as rp:
        ps = PowerShell(rp)
        ps.add_cmdlet(command).add_parameter("Name", "RemoteAccess")
        ps.invoke()
        message, error_id = error_of(ps)
    assert message == NOT_RECOGNIZED_MESSAGE.format(name=command)
    assert message.startswith(f"The term '{command}' is not recognized as the name of a cmdlet, function, script file")
    assert error_id == "CommandNotFoundException"
    server = iis.lab.servers[name]
    assert server.jea is not None and [i.accepted for i in server.jea.invocations] == [False]


def test_functions_are_called_case_insensitively_and_validate_their_parameters(iis: Setup) -> None:
    name = next(iter(iis.lab.servers))
    with pool(iis.lab, name) as rp:
        ps = PowerShell(rp)
        ps.add_cmdlet("invoke-sstpbotprobe").add_parameter("eventhours", 2)
        output = ps.invoke()
        assert not ps.had_errors and json.loads(output[0])["endpoint"]["configuration_name"] == "SstpBot"
        ps = PowerShell(rp)
        ps.add_cmdlet("Invoke-SstpBotDeleteHttpsysBinding").add_parameter("Endpoint", "0.0.0.0:443; rm -r C:\\")
        ps.invoke()
        message, _ = error_of(ps)
    assert "Cannot validate argument" in message
    assert iis.lab.servers[name].twin.actions == []


def test_the_administrator_endpoint_is_closed_to_the_bot_and_a_missing_one_is_named(tmp_path: Path) -> None:
    setup = start(tmp_path, ["healthy", "iis-binding"], jea=["vpn-healthy"])
    try:
        jea_cfg = setup.lab.server_config("vpn-healthy")
        plain_cfg = setup.lab.server_config("vpn-iis")
        assert jea_cfg.configuration_name == "SstpBot" and plain_cfg.configuration_name == "Microsoft.PowerShell"
        with pytest.raises(RemoteError, match="Access is denied") as denied:
            RemoteSession(replace(jea_cfg, configuration_name="Microsoft.PowerShell"), LAB_PASSWORD).open()
        # An authorisation refusal is an `auth` error that says what the account needs.
        assert denied.value.kind == "auth" and "--group" in denied.value.message
        with pytest.raises(RemoteError, match="Cannot find the Other session configuration"):
            RemoteSession(replace(jea_cfg, configuration_name="Other"), LAB_PASSWORD).open()
        # The default endpoint still gets the script text, as before.
        with RemoteSession(plain_cfg, LAB_PASSWORD) as session:
            assert "endpoint" not in session.probe() or session.probe()["endpoint"] is None
    finally:
        setup.lab.stop()


def test_an_outdated_endpoint_is_checked_never_fixed_and_heals_after_reinstall(tmp_path: Path) -> None:
    setup = start(tmp_path, ["iis-binding"], faults={"vpn-iis": ["endpoint_outdated"]})
    try:
        server = setup.lab.servers["vpn-iis"]
        assert server.jea is not None and server.jea.module_version != module_version()
        with RemoteSession(setup.lab.server_config("vpn-iis"), LAB_PASSWORD) as session:
            assert session.probe()["endpoint"]["module_version"] == server.jea.module_version
        code, check, _ = setup.cli("check", "vpn-iis", "--json")
        assert check["status"] == "unhealthy"  # the check runs
        assert "ENDPOINT_OUTDATED" in {f["id"] for f in check["findings"]} and check["plan"] is None
        server.jea.clear_log()
        code, fix, err = setup.cli("fix", "vpn-iis", "--yes", "--json")
        assert code != 0 and fix["steps"] == [] and fix["after"] is None, fix
        # Probes only: no fix function reached the server, and its state is untouched.
        assert {i.script for i in server.jea.invocations} == {"probe"}
        assert server.twin.actions == []
        assert "Install-SstpBotEndpoint.ps1" in json.dumps(fix["before"])  # the guidance says how to mend it

        server.jea.reinstall()
        code, check, _ = setup.cli("check", "vpn-iis", "--json")
        assert "ENDPOINT_OUTDATED" not in {f["id"] for f in check["findings"]} and check["plan"]
        code, fix, err = setup.cli("fix", "vpn-iis", "--yes", "--json")
        assert code == 0 and fix["state"] == "SUCCEEDED" and fix["after"]["status"] == "healthy", err
        assert server.jea.scripts_received == 0
    finally:
        setup.lab.stop()


def test_a_plan_approved_before_the_endpoint_went_out_of_date_is_refused(tmp_path: Path) -> None:
    """The plan's fingerprint does not cover the endpoint: the execute guard does (DESIGN 4, 12)."""
    setup = start(tmp_path, ["iis-binding"], jea=True)
    try:
        server = setup.lab.servers["vpn-iis"]
        assert server.jea is not None
        config = load_config(setup.config, {})
        actor = Actor(id="cli:test", source="cli")
        with build_service(config, {}, lambda: datetime.now(UTC)) as service:
            [outcome] = service.check([config.server("vpn-iis")], actor)
            assert outcome.plan_id is not None
            service.approve(outcome.plan_id, actor, authorised=True)
            server.jea.module_version = "0.0.9"  # the module was replaced by an older one meanwhile
            server.jea.clear_log()
            fix = service.execute(outcome.plan_id, actor)
        assert fix.state == "FAILED" and fix.steps == [] and fix.after is None
        assert fix.error is not None and "0.0.9" in fix.error and "Install-SstpBotEndpoint.ps1" in fix.error
        assert [i.script for i in server.jea.invocations] == ["probe"]
        assert server.twin.actions == []
    finally:
        setup.lab.stop()


def test_jea_names_must_be_lab_servers() -> None:
    from commands.errors import ConfigError

    with pytest.raises(ConfigError, match="vpn-nope"):
        Lab(["healthy"], jea=["vpn-nope"])


def test_the_restricted_remote_server_commands_are_recognised_but_not_emulated(iis: Setup) -> None:
    name = next(iter(iis.lab.servers))
    with pool(iis.lab, name) as rp:
        ps = PowerShell(rp)
        ps.add_cmdlet("Get-Command")
        ps.invoke()
        message, error_id = error_of(ps)
    assert "not recognized" not in message and "does not emulate" in message and error_id == "NotEmulated"
