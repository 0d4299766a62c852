"""Every shipped script parses cleanly with tree-sitter-pwsh, and the check really catches broken code."""

from __future__ import annotations

import pytest

from commands.scripts import SCRIPTS
from tests.scripts.pwsh_ast import parse, script_path, syntax_errors

BROKEN_SNIPPETS = [
    "param( [string]$a = ",
    "if ($x) { Get-Service",
    "$x = @{ a = ",
    "function F([string]$A { }",
    "foreach ($a in ) { }",
    "$s = 'unterminated",
]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_parses_without_errors(name: str) -> None:
    tree = parse(script_path(name).read_bytes())
    assert syntax_errors(tree) == []
    assert not tree.root_node.has_error


@pytest.mark.parametrize("snippet", BROKEN_SNIPPETS)
def test_broken_snippet_is_reported(snippet: str) -> None:
    tree = parse(snippet)
    assert tree.root_node.has_error
    assert syntax_errors(tree), f"the walker found nothing in {snippet!r}"


def test_valid_snippet_is_clean() -> None:
    assert syntax_errors(parse("[CmdletBinding()]\nparam([int]$A = 1)\n$b = @{ a = $A }\n")) == []


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_truncated_script_is_reported(name: str) -> None:
    source = script_path(name).read_text(encoding="utf-8")
    truncated = source[: source.rindex("}")]  # drop the last closing brace
    assert syntax_errors(parse(truncated))
