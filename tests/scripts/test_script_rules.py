"""Safety and output rules every shipped script follows (DESIGN 2, 9; DOMAIN 9)."""

from __future__ import annotations

import re

import pytest
from tree_sitter import Node, Tree

from commands.scripts import FIX_SCRIPTS, SCRIPTS
from tests.scripts.pwsh_ast import (
    body_statements,
    command_names,
    parse,
    script_source,
    text,
    walk,
)

# Commands that run text as code, spill into the host, or defeat $LASTEXITCODE (DOMAIN 9: `| Out-Null`).
FORBIDDEN_COMMANDS = {
    "invoke-expression",
    "iex",
    "add-type",
    "out-null",
    "write-host",
    "write-output",
    "out-host",
    "out-default",
    "start-process",
    "invoke-command",
    "new-pssession",
    "powershell",
    "powershell.exe",
    "pwsh",
    "cmd",
    "cmd.exe",
}
FORBIDDEN_TEXT = [
    r"\[scriptblock\]::Create",
    r"\.InvokeScript\(",
    # $ExecutionContext.InvokeCommand runs text as code; reading the language mode (DOMAIN 14) is all a script may do with it.
    r"\$ExecutionContext(?!\.SessionState\.LanguageMode\b)",
    r"-EncodedCommand",
    r"ArrayList",  # .Add returns an index that would leak into the output stream
    r"\|\s*Out-Null",
]
# Statements allowed in a script body without `$null =`/assignment: they write nothing to the output.
VOID_COMMANDS = {"set-strictmode", "start-sleep", "start-service", "add-probeerror"}
VOID_METHODS = {"Add", "Close", "Dispose", "Load", "Start", "Stop", "Refresh"}  # List[T], RegistryKey, HashAlgorithm, XmlDocument, ServiceController
FINAL_STATEMENT = re.compile(r"^ConvertTo-Json -InputObject \$\w+ -Depth 8 -Compress$")


def _tree(name: str) -> Tree:
    return parse(script_source(name).encode("utf-8"))


def last_statement(tree: Tree) -> Node:
    body = next(c for c in tree.root_node.children if c.type == "statement_list")
    return body.named_children[-1]


def stray_output(source: str) -> list[str]:
    """Body statements (outside functions) that could write to the output stream, except the final JSON."""
    tree = parse(source)
    statements = list(body_statements(tree))
    final = last_statement(tree)
    problems = []
    for statement in statements:
        if statement.start_byte == final.start_byte:
            continue
        first = statement.children[0]
        if first.type == "assignment_expression":
            continue
        stages = first.named_children if first.type == "pipeline_chain" else []
        if len(stages) == 1 and stages[0].type == "command":
            name = stages[0].child_by_field_name("command_name")
            if name is not None and text(name).lower() in VOID_COMMANDS:
                continue
        elif len(stages) == 1:
            # The outermost invocation comes first in a pre-order walk: `$list.Add(...)`.
            invocation = next((n for n in walk(stages[0]) if n.type == "invocation_expression"), None)
            if invocation is not None:
                member = next(c for c in invocation.children if c.type == "member_name")
                if text(member) in VOID_METHODS:
                    continue
        problems.append(text(statement)[:80])
    return problems


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_no_forbidden_commands(name: str) -> None:
    used = set(command_names(_tree(name)))
    assert used & FORBIDDEN_COMMANDS == set()


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_no_forbidden_text(name: str) -> None:
    source = script_source(name)
    for pattern in FORBIDDEN_TEXT:
        assert not re.search(pattern, source, re.IGNORECASE), pattern


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_strict_mode_and_stop(name: str) -> None:
    source = script_source(name)
    assert re.search(r"^Set-StrictMode -Version 2$", source, re.MULTILINE)
    assert re.search(r"^\$ErrorActionPreference = 'Stop'$", source, re.MULTILINE)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_ends_with_one_compressed_json_document(name: str) -> None:
    tree = _tree(name)
    final = last_statement(tree)
    assert FINAL_STATEMENT.match(text(final).strip()), text(final)
    assert command_names(tree).count("convertto-json") == 1


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_no_stray_output_in_body(name: str) -> None:
    assert stray_output(script_source(name)) == []


def test_stray_output_check_catches_leaks() -> None:
    source = (
        "$r = 1\nGet-Service -Name W3SVC\nif ($r) { $list.Insert(0, 1) }\n"
        "Start-Sleep -Seconds 1 | Get-Item x\nConvertTo-Json -InputObject $r -Depth 8 -Compress\n"
    )
    assert len(stray_output(source)) == 3


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_native_commands_only_through_the_argument_array_helper(name: str) -> None:
    """`&` appears only in Invoke-NativeCommand; netsh/appcmd/iisreset are never called by bare name."""
    tree = _tree(name)
    for node in walk(tree.root_node):
        if node.type == "command" and any(c.type == "command_invocation_operator" for c in node.children):
            function = node.parent
            while function is not None and function.type != "function_statement":
                function = function.parent
            assert function is not None, text(node)
            name_node = next(c for c in function.children if c.type == "function_name")
            assert text(name_node) == "Invoke-NativeCommand"
            assert text(node) == "& $FilePath @ArgumentList 2>&1"
    used = set(command_names(tree))
    assert not used & {"netsh", "netsh.exe", "appcmd", "appcmd.exe", "iisreset", "iisreset.exe"}


@pytest.mark.parametrize("name", FIX_SCRIPTS)
def test_fix_script_emits_the_result_keys(name: str) -> None:
    tree = _tree(name)
    keys = set()
    for node in walk(tree.root_node):
        if node.type == "hash_literal_expression":
            entries = [text(k) for k in walk(node) if k.type == "key_expression"]
            if "ok" in entries:
                keys = set(entries)
    assert keys == {"ok", "changed", "detail", "exit_code"}
    assert "New-FixResult" in script_source(name)


@pytest.mark.parametrize("name", FIX_SCRIPTS)
def test_fix_script_checks_elevation(name: str) -> None:
    assert "test-elevated" in command_names(_tree(name))


def test_sstp_appid_is_quoted_for_netsh() -> None:
    """DOMAIN 9 / WSDOCS#5922: a bare {...} argument is a script block; the AppId stays in a string."""
    tree = _tree("add_sstp_httpsys_binding")
    literals = [text(n) for n in walk(tree.root_node) if n.type == "string_literal"]
    assert "'appid={ba195980-cd49-458b-9e23-c84ee0adcd75}'" in literals
    assert "'certstorename=MY'" in literals
    for node in walk(tree.root_node):
        if node.type == "command":
            assert "{ba195980" not in text(node).lower() or "'appid=" in text(node)


def test_fix_scripts_verify_by_rereading() -> None:
    """Results come from re-read state, not netsh text (DOMAIN 9)."""
    checks = {
        "remove_iis_binding": "$after = Find-HttpsBinding",
        "delete_httpsys_binding": "$present = Test-BindingPresent",
        "delete_url_reservation": "$present = Test-ReservationPresent",
        "add_sstp_httpsys_binding": "$present = Test-BindingPresent",
        "set_sstp_certificate": "$after = Get-ConfiguredThumbprint",
        "control_remoteaccess": "$service.Refresh()",
    }
    for name, needle in checks.items():
        assert needle in script_source(name), name
    netsh_scripts = ["delete_httpsys_binding", "delete_url_reservation", "add_sstp_httpsys_binding"]
    for name in netsh_scripts:
        assert "SYSTEM\\CurrentControlSet\\Services\\HTTP\\Parameters" in script_source(name)


def test_no_script_waits_for_a_service() -> None:
    """DESIGN 9 [2], DOMAIN 14: the waiting lives in Python (commands.executor). No script waits for a
    service, starts a background job, or sleeps more than the short registry re-read of netsh scripts."""
    for name in SCRIPTS:
        source = script_source(name)
        used = set(command_names(_tree(name)))
        assert not used & {"restart-service", "start-job", "wait-job", "stop-job", "receive-job", "remove-job"}, name
        assert "WaitForStatus" not in source, name
        assert not re.search(r"Start-Sleep -Seconds", source), name


def test_the_old_composite_restart_scripts_are_gone() -> None:
    from tests.scripts.pwsh_ast import SCRIPTS_DIR

    shipped = {p.stem for p in SCRIPTS_DIR.rglob("*.ps1")}
    assert not shipped & {"bind_sstp_certificate", "restart_remoteaccess", "remoteaccess_restart"}
