"""Every shipped script parses cleanly with tree-sitter-pwsh, and the check really catches broken code."""

from __future__ import annotations

from pathlib import Path

import pytest

from commands.scripts import INCLUDE_RE, SCRIPTS
from tests.scripts.pwsh_ast import SCRIPTS_DIR, parse, script_source, syntax_errors

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
    tree = parse(script_source(name).encode("utf-8"))
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
    source = script_source(name)
    truncated = source[: source.rindex("}")]  # drop the last closing brace
    assert syntax_errors(parse(truncated))


LIBRARIES = sorted(p for p in SCRIPTS_DIR.joinpath("lib").glob("*.ps1"))


@pytest.mark.parametrize("path", LIBRARIES, ids=lambda p: p.stem)
def test_every_shipped_file_parses_on_its_own(path: Path) -> None:
    """The files as shipped (scripts with their include lines, and the libraries) are valid too."""
    assert syntax_errors(parse(path.read_bytes())) == []
    for name in SCRIPTS:
        assert syntax_errors(parse((SCRIPTS_DIR / f"{name}.ps1").read_bytes())) == [], name


def test_every_include_names_a_library_and_every_library_is_used() -> None:
    included = {
        lib
        for name in SCRIPTS
        for lib in INCLUDE_RE.findall((SCRIPTS_DIR / f"{name}.ps1").read_text(encoding="utf-8"))
    }
    assert included == {p.stem for p in LIBRARIES}
    for name in SCRIPTS:
        assert "# sstp-bot-include:" not in script_source(name)  # every one was replaced
