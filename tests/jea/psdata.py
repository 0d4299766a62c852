"""Read the PowerShell files `sstp-bot endpoint export` writes, with tree-sitter-pwsh.

`.psd1`, `.psrc` and `.pssc` files are PowerShell data files: one hashtable literal of strings,
arrays, nested hashtables, numbers and `$true`/`$false`. `data_file` turns one into Python values and
refuses anything else (an expression, a variable, a double-quoted string), as `Import-PowerShellDataFile`
would refuse code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tree_sitter import Node

from tests.scripts.pwsh_ast import parse, syntax_errors, text


class NotData(AssertionError):
    """The file holds something a PowerShell data file may not."""


def read(path: Path) -> str:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), f"{path.name}: no UTF-8 byte-order mark (Windows PowerShell 5.1 needs it)"
    return raw[3:].decode("utf-8")


def data_file(path: Path) -> dict[str, Any]:
    tree = parse(read(path))
    assert syntax_errors(tree) == [], f"{path.name}: {syntax_errors(tree)}"
    statements = [c for c in tree.root_node.children if c.type != "comment"]
    assert len(statements) == 1, f"{path.name}: expected one hashtable"
    value = _value(statements[0])
    assert isinstance(value, dict), f"{path.name}: the top level is not a hashtable"
    return value


def _only(node: Node) -> Node:
    children = [c for c in node.children if c.type != "comment"]
    if len(children) != 1:
        raise NotData(f"{node.type}: {text(node)[:80]!r}")
    return children[0]


def _value(node: Node) -> Any:
    kind = node.type
    if kind in ("statement_list", "pipeline", "pipeline_chain", "unary_expression", "key_expression"):
        if kind == "statement_list":
            items = [_value(c) for c in node.children if c.type == "pipeline"]
            return items[0] if len(items) == 1 else items
        return _value(_only(node))
    if kind == "hash_literal_expression":
        body = next((c for c in node.children if c.type == "hash_literal_body"), None)
        result: dict[str, Any] = {}
        for entry in body.children if body is not None else []:
            if entry.type != "hash_entry":
                continue
            key_node = entry.child(0)
            value_node = entry.children[-1]
            assert key_node is not None
            key = _value(key_node)
            if key in result:
                raise NotData(f"duplicate key {key!r}")
            result[str(key)] = _value(value_node)
        return result
    if kind == "array_expression":
        inner = next((c for c in node.children if c.type == "statement_list"), None)
        if inner is None:
            return []
        value = _value(inner)
        return value if isinstance(value, list) else [value]
    if kind == "array_literal_expression":
        return [_value(c) for c in node.children if c.type != ","]
    if kind == "string_literal":
        literal = _only(node)
        if literal.type != "verbatim_string_characters":
            raise NotData(f"not a single-quoted string: {text(node)!r}")
        raw = text(literal)
        return raw[1:-1].replace("''", "'")
    if kind == "simple_name":  # a bare hashtable key
        return text(node)
    if kind == "integer_literal":
        return int(text(node))
    if kind == "variable":
        name = text(node).lower()
        if name in ("$true", "$false"):
            return name == "$true"
        raise NotData(f"variable {text(node)} in a data file")
    raise NotData(f"{kind}: {text(node)[:80]!r}")


def top_level_functions(source: str) -> dict[str, str]:
    """Name -> body (the source between the braces) of each function defined at the top of a module."""
    data = source.encode("utf-8")
    tree = parse(data)
    assert syntax_errors(tree) == [], syntax_errors(tree)
    functions: dict[str, str] = {}
    for statements in (c for c in tree.root_node.children if c.type == "statement_list"):
        for node in statements.children:
            if node.type != "function_statement":
                continue
            name = next(c for c in node.children if c.type == "function_name")
            opening = next(c for c in node.children if c.type == "{")
            closing = [c for c in node.children if c.type == "}"][-1]
            assert text(name) not in functions, f"{text(name)} defined twice"
            functions[text(name)] = data[opening.end_byte : closing.start_byte].decode("utf-8")
    return functions
