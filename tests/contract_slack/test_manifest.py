"""DESIGN 8: ship a Slack app manifest so the app is created in one step. It must parse, declare /sstp,
interactivity, the bot scopes the code actually uses, and a socket-mode setting matching the default."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bot.config import SlackConfig

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "manifest.yml"


def _scalar(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    if text[0] in "\"'":
        return json.loads(text) if text[0] == '"' else text[1:-1]
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def _strip_comment(line: str) -> str:
    out, quote = [], None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            break
        out.append(ch)
    return "".join(out).rstrip()


def mini_yaml(text: str) -> Any:
    """Just enough YAML for a Slack manifest (block mappings, block sequences, scalars, folded `>-`)."""
    raw = text.splitlines()
    lines: list[tuple[int, str]] = []
    i = 0
    while i < len(raw):
        line = _strip_comment(raw[i])
        if line.strip():
            indent = len(line) - len(line.lstrip(" "))
            content = line.strip()
            if content.endswith((": >-", ": >", ": |", ": |-")):
                key = content.split(":", 1)[0]
                body = []
                i += 1
                while i < len(raw) and (not raw[i].strip() or len(raw[i]) - len(raw[i].lstrip(" ")) > indent):
                    body.append(raw[i].strip())
                    i += 1
                lines.append((indent, f"{key}: {json.dumps(' '.join(b for b in body if b))}"))
                continue
            lines.append((indent, content))
        i += 1

    def parse(pos: int, indent: int) -> tuple[Any, int]:
        if lines[pos][1].startswith("- "):
            seq = []
            while pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("- "):
                item = lines[pos][1][2:]
                if re.match(r"^[\w.-]+:( |$)", item):
                    lines[pos] = (indent + 2, item)
                    value, pos = parse(pos, indent + 2)
                    seq.append(value)
                else:
                    seq.append(_scalar(item))
                    pos += 1
            return seq, pos
        mapping: dict[str, Any] = {}
        while pos < len(lines) and lines[pos][0] == indent and not lines[pos][1].startswith("- "):
            key, _, rest = lines[pos][1].partition(":")
            pos += 1
            if rest.strip():
                mapping[key.strip()] = _scalar(rest)
            elif pos < len(lines) and lines[pos][0] > indent:
                mapping[key.strip()], pos = parse(pos, lines[pos][0])
            elif pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("- "):
                mapping[key.strip()], pos = parse(pos, indent)
            else:
                mapping[key.strip()] = None
        return mapping, pos

    value, _ = parse(0, lines[0][0])
    return value


def load_manifest() -> dict[str, Any]:
    text = MANIFEST.read_text(encoding="utf-8")
    assert "\t" not in text
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        yaml = None
    if yaml is not None:
        return yaml.safe_load(text)
    parsed = mini_yaml(text)
    # if any interpreter on the machine has PyYAML, let it confirm the file is valid YAML with the same content
    py = shutil.which("python3")
    if py:
        out = subprocess.run([py, "-c", "import sys,json,yaml;print(json.dumps(yaml.safe_load(open(sys.argv[1]))))", str(MANIFEST)],
                             capture_output=True, text=True, timeout=30)
        if out.returncode == 0:
            assert json.loads(out.stdout) == parsed
    return parsed


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return load_manifest()


def test_manifest_declares_the_sstp_slash_command(manifest: dict[str, Any]) -> None:
    commands = manifest["features"]["slash_commands"]
    assert [c["command"] for c in commands] == ["/sstp"]
    cmd = commands[0]
    assert cmd.get("description") and len(cmd["description"]) <= 2000
    hint = cmd.get("usage_hint", "")
    for form in ("check", "all", "group:", "fix", "history", "status", "servers", "help"):
        assert form in hint, form
    assert manifest["features"].get("bot_user", {}).get("display_name")
    assert manifest["display_information"]["name"]


def test_manifest_enables_interactivity_for_the_buttons(manifest: dict[str, Any]) -> None:
    assert manifest["settings"]["interactivity"]["is_enabled"] is True


def test_manifest_bot_scopes_are_the_ones_the_code_uses(manifest: dict[str, Any]) -> None:
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "bot").rglob("*.py"))
    called = set(re.findall(r"client\.([a-z0-9_]+)\(", source))
    needs = {
        "chat_postMessage": "chat:write", "chat_update": "chat:write", "chat_postEphemeral": "chat:write",
        "usergroups_users_list": "usergroups:read", "users_info": "users:read", "conversations_info": "channels:read",
        "conversations_members": "channels:read", "users_list": "users:read", "files_upload_v2": "files:write",
    }
    required = {"commands"} | {needs[m] for m in called if m in needs}
    assert required <= scopes, required - scopes
    assert "usergroups:read" in scopes  # operators/approvers may be user groups (S...)
    unused = scopes - required
    assert not unused, f"scopes requested but not used: {unused}"
    assert not manifest["oauth_config"]["scopes"].get("user"), "no user scopes are needed"


def test_manifest_socket_mode_matches_the_default_mode(manifest: dict[str, Any]) -> None:
    default_mode = SlackConfig().mode
    assert default_mode == "socket"
    assert manifest["settings"]["socket_mode_enabled"] is (default_mode == "socket")
    if default_mode == "socket":
        # Socket Mode needs no public URLs; a request URL would be ignored or wrong
        assert not manifest["features"]["slash_commands"][0].get("url")
        assert not manifest["settings"]["interactivity"].get("request_url")
