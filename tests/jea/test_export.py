"""`sstp-bot endpoint export`: the JEA files, parsed as PowerShell and checked against the shipped scripts."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.cli import Environment, main
from commands.errors import UsageError
from commands.jea import (
    DEFAULT_GROUP,
    export_endpoint,
    function_name,
    function_names,
    module_version,
    script_for_function,
    validate_group,
)
from commands.scripts import SCRIPTS, load_script
from tests.jea.psdata import data_file, read, top_level_functions
from tests.scripts.pwsh_ast import command_names, parse, syntax_errors, walk

# Commands RestrictedRemoteServer replaces with constrained proxy functions: a module function that
# calls one by its short name gets the proxy, not the cmdlet (Microsoft Learn, "JEA Role Capabilities").
JEA_PROXIED = {
    "clear-host", "exit-pssession", "get-command", "get-formatdata", "get-help", "measure-object",
    "out-default", "select-object",
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("jea") / "out"
    export_endpoint(folder, "CORP\\VPN Bots")
    return folder


def test_the_files_are_where_an_admin_and_powershell_look_for_them(exported: Path) -> None:
    files = sorted(str(p.relative_to(exported)) for p in exported.rglob("*") if p.is_file())
    assert files == [
        "Install-SstpBotEndpoint.ps1",
        "SstpBot.pssc",
        "SstpBot/RoleCapabilities/SstpBot.psrc",
        "SstpBot/SstpBot.psd1",
        "SstpBot/SstpBot.psm1",
    ]


def test_function_names_follow_design_12() -> None:
    assert function_name("probe") == "Invoke-SstpBotProbe"
    assert function_name("delete_httpsys_binding") == "Invoke-SstpBotDeleteHttpsysBinding"
    assert function_name("remoteaccess_state") == "Invoke-SstpBotRemoteaccessState"
    for script in SCRIPTS:
        name = function_name(script)
        assert script_for_function(name) == script
        assert script_for_function(name.upper()) == script  # PowerShell names are case-insensitive
        assert script_for_function("sstpbot\\" + name.lower()) == script  # module-qualified
    assert script_for_function("Invoke-SstpBot") is None
    assert script_for_function("Get-Service") is None


def test_manifest(exported: Path) -> None:
    manifest = data_file(exported / "SstpBot" / "SstpBot.psd1")
    assert manifest["RootModule"] == "SstpBot.psm1"
    assert manifest["ModuleVersion"] == module_version()
    assert manifest["FunctionsToExport"] == function_names()
    assert len(manifest["FunctionsToExport"]) == len(SCRIPTS)
    assert manifest["CmdletsToExport"] == [] and manifest["AliasesToExport"] == [] and manifest["VariablesToExport"] == []


def test_module_has_one_function_per_script_whose_body_is_the_script(exported: Path) -> None:
    source = read(exported / "SstpBot" / "SstpBot.psm1")
    functions = top_level_functions(source)
    assert list(functions) == [function_name(script) for script in SCRIPTS]
    for script in SCRIPTS:
        body = functions[function_name(script)]
        assert body.strip("\n") == load_script(script).strip("\n"), script
        # the script's own param() block is the function's: same parameters through either endpoint
        assert "param(" in body.lower().replace(" ", "")
    tree = parse(source)
    assert "export-modulemember" in command_names(tree)


def test_role_capability_exposes_exactly_the_functions(exported: Path) -> None:
    role = data_file(exported / "SstpBot" / "RoleCapabilities" / "SstpBot.psrc")
    assert role["VisibleFunctions"] == function_names()
    assert role["ModulesToImport"] == "SstpBot"
    # Nothing else: the functions' own commands run inside the module, unconstrained (DOMAIN 14).
    for key in ("VisibleCmdlets", "VisibleExternalCommands", "VisibleProviders", "VisibleAliases", "ScriptsToProcess",
                "FunctionDefinitions", "VariableDefinitions", "AliasDefinitions"):
        assert key not in role


def test_session_configuration(exported: Path) -> None:
    session = data_file(exported / "SstpBot.pssc")
    assert session["SessionType"] == "RestrictedRemoteServer"
    assert session["RunAsVirtualAccount"] is True
    assert session["RoleDefinitions"] == {"CORP\\VPN Bots": {"RoleCapabilities": "SstpBot"}}
    assert session["TranscriptDirectory"].startswith("C:\\")
    assert "LanguageMode" not in session or session["LanguageMode"] == "NoLanguage"


def test_installer_parses_copies_the_module_and_registers_the_configuration(exported: Path) -> None:
    source = read(exported / "Install-SstpBotEndpoint.ps1")
    tree = parse(source)
    assert syntax_errors(tree) == []
    commands = command_names(tree)
    for command in ("copy-item", "register-pssessionconfiguration", "unregister-pssessionconfiguration",
                    "get-pssessionconfiguration", "test-pssessionconfigurationfile", "write-output"):
        assert command in commands, command
    assert "'SstpBot'" in source and "'CORP\\VPN Bots'" in source
    assert "WindowsPowerShell\\Modules\\" in source
    register = next(n for n in walk(tree.root_node) if n.type == "command"
                    and n.text is not None and n.text.decode().startswith("Register-PSSessionConfiguration"))
    assert "-Path $SessionFile" in register.text.decode()  # type: ignore[union-attr]
    assert source.startswith("# Installs") or "#Requires -RunAsAdministrator" in source


def test_no_script_calls_a_command_jea_constrains_or_exits() -> None:
    for script in SCRIPTS:
        tree = parse(load_script(script))
        called = set(command_names(tree))
        assert not called & JEA_PROXIED, f"{script}: use the module-qualified name of {called & JEA_PROXIED}"
        exits = [n for n in walk(tree.root_node) if n.type == "flow_control_statement"
                 and (n.text or b"").decode().lower().startswith("exit")]
        assert not exits, f"{script}: `exit` would end the JEA pipeline, not the function"


@pytest.mark.parametrize(
    "group",
    ["SstpBot Operators", "CORP\\VPN Bots", "Opérateurs VPN", "vpn-bots_01"],
)
def test_group_names_accepted(group: str) -> None:
    assert validate_group(group) == group


@pytest.mark.parametrize(
    "group",
    ["", " leading", "trailing ", "it's", 'say "x"', "back`tick", "type\u2019quote", "two\nlines", "a\\b\\c",
     "semi;colon", "CORP\\", "x" * 300, "tab\there", "pipe|x"],
)
def test_group_names_that_could_break_the_files_are_refused(group: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        validate_group(group)
    with pytest.raises(UsageError):
        export_endpoint(tmp_path / "out", group)
    assert not (tmp_path / "out").exists()


def test_module_version_is_a_system_version() -> None:
    assert module_version("0.1.0") == "0.1.0"
    assert module_version("1.2.0rc1") == "1.2.0"
    assert module_version("2") == "2.0"
    assert module_version("1.2.3.4.5") == "1.2.3.4"


def test_cli_export(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(["endpoint", "export", str(tmp_path / "jea")], Environment(stdout=out, stderr=err, environ={}))
    assert code == 0, err.getvalue()
    session = data_file(tmp_path / "jea" / "SstpBot.pssc")
    assert session["RoleDefinitions"] == {DEFAULT_GROUP: {"RoleCapabilities": "SstpBot"}}
    assert "Install-SstpBotEndpoint.ps1" in out.getvalue()


def test_cli_refuses_a_bad_group_and_writes_nothing(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(["endpoint", "export", str(tmp_path / "jea"), "--group", "x'; Remove-Item C:\\ #"],
                Environment(stdout=out, stderr=err, environ={}))
    assert code == 3
    assert "--group" in err.getvalue()
    assert not (tmp_path / "jea").exists()


def test_cli_endpoint_without_action_is_usage(tmp_path: Path) -> None:
    err = io.StringIO()
    assert main(["endpoint"], Environment(stdout=io.StringIO(), stderr=err, environ={})) == 3


def test_the_export_follows_the_scripts_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A script added to (or rewritten in) the package is exported without touching the exporter."""
    import commands.jea as jea

    extra = "# sstp-bot-script: remoteaccess_state\n[CmdletBinding()]\nparam()\n$here = @'\nx\n'@\n'{}'\n"
    scripts = {**SCRIPTS, "remoteaccess_state": ()}
    monkeypatch.setattr(jea, "SCRIPTS", scripts)
    monkeypatch.setattr(jea, "load_script", lambda name: extra if name == "remoteaccess_state" else load_script(name))
    export_endpoint(tmp_path / "out")
    functions = top_level_functions(read(tmp_path / "out" / "SstpBot" / "SstpBot.psm1"))
    assert "Invoke-SstpBotRemoteaccessState" in functions
    assert functions["Invoke-SstpBotRemoteaccessState"].strip("\n") == extra.strip("\n")
    role = data_file(tmp_path / "out" / "SstpBot" / "RoleCapabilities" / "SstpBot.psrc")
    assert role["VisibleFunctions"][-1] == "Invoke-SstpBotRemoteaccessState"
    assert len(role["VisibleFunctions"]) == len(scripts)


@pytest.mark.parametrize("line", ["using namespace System.Text", "#Requires -Modules RemoteAccess"])
def test_a_script_with_file_scoped_statements_is_not_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str
) -> None:
    import commands.jea as jea

    monkeypatch.setattr(jea, "load_script", lambda name: f"# sstp-bot-script: {name}\n{line}\nparam()\n'{{}}'\n")
    with pytest.raises(UsageError, match="applies to a whole file"):
        export_endpoint(tmp_path / "out")
    assert not (tmp_path / "out" / "SstpBot" / "SstpBot.psm1").exists()
