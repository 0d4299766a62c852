"""Run a received script against a twin: identify it, check its parameters, apply script faults.

The lab never executes PowerShell. It identifies a script by its `# sstp-bot-script: NAME` header
(DESIGN 9), checks the parameter names it received against the names the *received text* declares
in its `param()` block, validates the values with `commands.scripts.validate_params` (the same rules
the scripts' validation attributes enforce), and then calls the twin. Anything else is a terminating
error, as PowerShell would give for an unknown parameter or a failed validation attribute.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psrpcore.types import ErrorCategory

from commands.errors import UsageError
from commands.lab.outcomes import ScriptOutcome, TerminatingError
from commands.lab.twin import RrasTwin
from commands.scripts import SCRIPTS, script_name, validate_params

_PARAM_BLOCK_RE = re.compile(r"\bparam\s*\(", re.IGNORECASE)
_STRING_RE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"`]|`.)*\"")
_VARIABLE_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class ScriptFaults:
    """Script-level faults of one lab server."""

    terminating_error: bool = False  # every script throws before touching anything
    bad_json: bool = False  # every script writes output that is not one JSON document
    error_stream: bool = False  # every script writes a non-terminating error (and does not run)
    hang: bool = False  # every script starts and never finishes


def declared_parameters(text: str) -> list[str] | None:
    """The parameter names of a script's top-level `param()` block, or None when it has none."""
    names = _declared_parameters(text)
    return None if names is None else list(names)


@functools.lru_cache(maxsize=64)
def _declared_parameters(text: str) -> tuple[str, ...] | None:
    # A pure function of the text, and every check sends the same ~29 KB probe text: parse it once
    # (a tuple, so no caller can change the cached answer).
    stripped = _strip_comments(text)
    m = _PARAM_BLOCK_RE.search(stripped)
    if not m:
        return None
    depth = 0
    start = m.end() - 1
    for i in range(start, len(stripped)):
        ch = stripped[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return tuple(_parameter_names(_STRING_RE.sub("''", stripped[start + 1 : i])))
    return None


def _parameter_names(block: str) -> list[str]:
    """Names of the declarations in a param() body: attributes `[...]` dropped, then per top-level
    comma-separated declaration the first `$Name` (later ones are default values such as `$env:X`)."""
    flat = []
    depth = 0
    for ch in block:
        if ch in "[(":
            depth += 1
            if depth == 1 and ch == "(":
                flat.append(ch)
            continue
        if ch in "])":
            depth -= 1
            continue
        flat.append(ch if depth == 0 else "")
    names: list[str] = []
    for declaration in "".join(flat).split(","):
        m = _VARIABLE_RE.search(declaration)
        if m and m.group(1).lower() not in (n.lower() for n in names):
            names.append(m.group(1))
    return names


def _strip_comments(text: str) -> str:
    text = re.sub(r"<#.*?#>", "", text, flags=re.DOTALL)
    return re.sub(r"(?m)#.*$", "", text)


class ScriptRuntime:
    """The `ScriptExecutor` of one lab server: received script text + parameters -> outcome."""

    #: Called after every script that reached the twin (the lab's TLS port re-reads it, DESIGN 11).
    after_script: Callable[[], None] | None = None

    def __init__(self, twin: RrasTwin, faults: ScriptFaults | None = None) -> None:
        self.twin = twin
        self.faults = faults or ScriptFaults()
        #: Every script received: (its header name or None, the command's useLocalScope). Tests prove
        #: with it that the bot sends every script in a local scope (DOMAIN 14).
        self.received: list[tuple[str | None, bool | None]] = []

    def __call__(self, text: str, params: dict[str, Any], *, local_scope: bool | None = True) -> ScriptOutcome:
        name = script_name(text)
        self.received.append((name, local_scope))
        if local_scope is not True:
            # DOMAIN 14: a script added without useLocalScope is dot-sourced into the runspace; its
            # parameters and variables (with their type constraints) leak into the next script. The
            # shipped scripts rely on their own scope, so the lab refuses, where Windows would
            # silently corrupt the next script's variables.
            return _terminating(
                f"{name or 'script'}: the script was not sent in a local scope (AddScript useLocalScope is "
                f"{local_scope}); sstp-bot scripts must run with useLocalScope = true.",
                "LocalScopeRequired",
                ErrorCategory.InvalidOperation,
            )
        if name is None or name not in SCRIPTS:
            return _terminating(
                "The term is not recognized as a shipped sstp-bot script: the first line must be "
                "'# sstp-bot-script: NAME' naming a known script.",
                "CommandNotFoundException",
                ErrorCategory.ObjectNotFound,
            )
        if "__positional__" in params:
            return _terminating(
                f"{name}: positional arguments are not accepted.",
                "PositionalParameterNotFound",
                ErrorCategory.InvalidArgument,
            )
        declared = declared_parameters(text) or []
        declared_lower = {d.lower(): d for d in declared}
        for key in params:
            if key.lower() not in declared_lower:
                return _terminating(
                    f"A parameter cannot be found that matches parameter name '{key}'.",
                    f"NamedParameterNotFound,{name}",
                    ErrorCategory.InvalidArgument,
                )
        canonical = {declared_lower[k.lower()]: v for k, v in params.items()}
        try:
            clean = validate_params(name, canonical)
        except UsageError as exc:
            return _terminating(
                f"Cannot validate argument: {exc}", f"ParameterArgumentValidationError,{name}", ErrorCategory.InvalidData
            )
        if self.faults.terminating_error:
            return _terminating(
                f"{name}: Exception calling \"Invoke\": The RPC server is unavailable. (0x800706BA) (lab fault)",
                "RuntimeException",
                ErrorCategory.NotSpecified,
            )
        if self.faults.hang:
            return ScriptOutcome(running=True)
        if self.faults.error_stream:
            # Write-Error without -ErrorAction Stop: the pipeline completes, the error is in the stream.
            return ScriptOutcome(
                output=[json.dumps({"ok": True, "changed": False, "detail": "", "exit_code": None})],
                errors=[f"{name}: Cannot open the registry key HKLM\\SYSTEM\\...\\SstpSvc\\Parameters (lab fault)"],
            )
        if self.faults.bad_json:
            # Malformed output, and (like every injected fault) the twin is not touched.
            return ScriptOutcome(output=['{"schema": "sstp-bot/snapshot/v1", "host": {"computer_name": '])
        # Like the shipped scripts, the twin answers every failure (not elevated, certificate missing)
        # with {"ok": false, ...} rather than a terminating error.
        result = self._dispatch(name, clean)
        if self.after_script is not None:
            self.after_script()
        return ScriptOutcome(output=[json.dumps(result, separators=(",", ":"))])

    def _dispatch(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        twin = self.twin
        if name == "probe":
            return twin.probe(int(params.get("EventHours", 24)), int(params.get("MaxEvents", 100)))
        if name == "remove_iis_binding":
            return twin.remove_iis_binding(str(params["Site"]), str(params["BindingInformation"]))
        if name == "restart_iis":
            return twin.restart_iis()
        if name == "delete_httpsys_binding":
            return twin.delete_httpsys_binding(str(params["Endpoint"]))
        if name == "delete_url_reservation":
            return twin.delete_url_reservation(str(params["Url"]))
        if name == "add_sstp_httpsys_binding":
            return twin.add_sstp_httpsys_binding(str(params["Endpoint"]), str(params["Thumbprint"]))
        if name == "set_sstp_certificate":
            return twin.set_sstp_certificate(str(params["Thumbprint"]))
        if name == "control_remoteaccess":
            return twin.control_remoteaccess(str(params["Action"]))
        if name == "remoteaccess_state":
            return twin.remoteaccess_state()
        raise AssertionError(f"the lab does not implement {name}")  # pragma: no cover - SCRIPTS is closed


def _terminating(message: str, error_id: str, category: ErrorCategory) -> ScriptOutcome:
    return ScriptOutcome(terminating=TerminatingError(message, error_id, category))
