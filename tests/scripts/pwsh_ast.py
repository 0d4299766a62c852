"""Helpers for the script tests: parse PowerShell with tree-sitter-pwsh and read what a script declares.

The grammar reports a syntax problem as an `ERROR` node (text it could not fit) or a zero-width node
with `is_missing` set (a token it had to invent, such as a closing brace); `Node.has_error` is true on
the node and every ancestor of either. `syntax_errors` walks the whole tree and returns both kinds
with positions, plus errors hidden below a node's visible children.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tree_sitter_pwsh
from tree_sitter import Language, Node, Parser, Tree

from commands.scripts import load_script

SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "commands" / "scripts"
PWSH = Language(tree_sitter_pwsh.language())


def parse(source: str | bytes) -> Tree:
    data = source.encode("utf-8") if isinstance(source, str) else source
    return Parser(PWSH).parse(data)


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def text(node: Node) -> str:
    return (node.text or b"").decode("utf-8")


def syntax_errors(tree: Tree) -> list[str]:
    """Every ERROR and MISSING node, as 'line:column kind text' (1-based lines).

    A MISSING token the grammar keeps hidden (e.g. `command_name_token1` in `foreach ($a in ) {}`) is
    not among its parent's `children`; such a parent still has `has_error` while none of its children
    do, so it is reported as 'HIDDEN' at its own position.
    """
    problems = []
    for node in walk(tree.root_node):
        position = f"{node.start_point[0] + 1}:{node.start_point[1] + 1}"
        if node.type == "ERROR" or node.is_missing:
            kind = "MISSING " + node.type if node.is_missing else "ERROR"
            problems.append(f"{position} {kind} {text(node)[:60]!r}")
        elif node.has_error and not any(child.has_error for child in node.children):
            problems.append(f"{position} HIDDEN error inside {node.type} {text(node)[:60]!r}")
    return problems


@dataclass(frozen=True)
class DeclaredParam:
    name: str
    type_name: str | None  # 'int', 'string', ... (lower case) or None when untyped
    mandatory: bool
    default: str | None  # source text of the default value
    attributes: dict[str, list[str]]  # attribute name (lower case) -> argument source texts


def script_param_block(tree: Tree) -> Node | None:
    """The script's own `param()` block (a direct child of the program, not a function's)."""
    for child in tree.root_node.children:
        if child.type == "param_block":
            return child
    return None


def _attribute_name(attribute: Node) -> str | None:
    for child in attribute.children:
        if child.type == "attribute_name":
            return text(child)
    return None


def _attribute_arguments(attribute: Node) -> list[Node]:
    for child in attribute.children:
        if child.type == "attribute_arguments":
            return [arg for arg in child.children if arg.type == "attribute_argument"]
    return []


def _is_mandatory(arguments: list[Node]) -> bool:
    for argument in arguments:
        parts = [c for c in argument.children if c.type != "="]
        if parts and parts[0].type == "simple_name" and text(parts[0]).lower() == "mandatory":
            # `Mandatory` alone means true; `Mandatory = $false` does not.
            return len(parts) == 1 or text(parts[-1]).lower() != "$false"
    return False


def declared_params(tree: Tree) -> list[DeclaredParam]:
    block = script_param_block(tree)
    if block is None:
        return []
    params = []
    for node in walk(block):
        if node.type != "script_parameter":
            continue
        name = type_name = default = None
        mandatory = False
        attributes: dict[str, list[str]] = {}
        for child in node.children:
            if child.type == "variable":
                name = text(child).lstrip("$")
            elif child.type == "script_parameter_default":
                default = text(child).lstrip("=").strip()
            elif child.type == "attribute_list":
                for attribute in child.children:
                    if attribute.type != "attribute":
                        continue
                    literal = next((c for c in attribute.children if c.type == "type_literal"), None)
                    if literal is not None:
                        type_name = text(literal).strip("[]").strip().lower()
                        continue
                    attr_name = (_attribute_name(attribute) or "").lower()
                    arguments = _attribute_arguments(attribute)
                    attributes[attr_name] = [text(a) for a in arguments]
                    if attr_name == "parameter" and _is_mandatory(arguments):
                        mandatory = True
        assert name is not None, text(node)
        params.append(DeclaredParam(name, type_name, mandatory, default, attributes))
    return params


def command_names(tree: Tree) -> list[str]:
    """Every command invoked by name (lower case), e.g. 'get-service', 'iex'."""
    names = []
    for node in walk(tree.root_node):
        if node.type == "command":
            name = node.child_by_field_name("command_name")
            if name is not None and name.type == "command_name":
                names.append(text(name).lower())
    return names


# Subtrees whose statements are values, not output of the script body.
_VALUE_SCOPES = {
    "function_statement",
    "script_block_expression",
    "sub_expression",
    "array_expression",
    "parenthesized_expression",
    "param_block",
}


def body_statements(tree: Tree) -> Iterator[Node]:
    """Pipeline statements that run in the script body (outside functions and value expressions)."""

    def visit(node: Node) -> Iterator[Node]:
        if node.type in _VALUE_SCOPES:
            return
        if node.type == "statement_list":
            for child in node.children:
                if child.type == "pipeline":
                    yield child
        for child in node.children:
            yield from visit(child)

    yield from visit(tree.root_node)


def script_path(name: str) -> Path:
    return SCRIPTS_DIR / f"{name}.ps1"


def script_source(name: str) -> str:
    """What is sent to the server: the script with its `# sstp-bot-include:` helpers in place."""
    return load_script(name)
