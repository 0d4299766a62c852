"""No script defines a helper differently from the shared one.

Shared helpers stand once in `commands/scripts/lib/` and are put in place by `load_script`; a script
that defined its own `Invoke-NativeCommand` beside them would behave differently on the same server.
The scripts are read as sent to the server.
"""

from __future__ import annotations

from collections import defaultdict

from commands.scripts import SCRIPTS
from tests.scripts.pwsh_ast import parse, script_source, text, walk


def function_definitions(name: str) -> dict[str, str]:
    tree = parse(script_source(name).encode("utf-8"))
    found: dict[str, str] = {}
    for node in walk(tree.root_node):
        if node.type == "function_statement":
            name_node = next((c for c in node.children if c.type == "function_name"), None)
            if name_node is not None:
                found[text(name_node).lower()] = " ".join(text(node).split())
    return found


def test_the_parser_finds_the_shared_helpers() -> None:
    assert "invoke-nativecommand" in function_definitions("delete_httpsys_binding")


def test_a_helper_defined_in_several_scripts_is_identical_in_each() -> None:
    copies: dict[str, dict[str, str]] = defaultdict(dict)
    for script in SCRIPTS:
        for function, body in function_definitions(script).items():
            copies[function][script] = body
    shared = {f: by_script for f, by_script in copies.items() if len(by_script) > 1}
    assert shared, "expected helpers shared between scripts"
    different = {f: sorted(by_script) for f, by_script in shared.items() if len(set(by_script.values())) > 1}
    assert not different, f"helpers that differ between scripts: {different}"
