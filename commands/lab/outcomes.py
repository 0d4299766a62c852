"""What a lab server's pipelines produce and how its endpoint refuses a request: the types the WinRM
endpoint (`commands.lab.endpoint`), the script runtime (`commands.lab.runtime`) and the JEA mode
(`commands.lab.jea`) share, apart from all three so that none of them imports another for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from psrpcore.types import ErrorCategory


@dataclass(frozen=True)
class TerminatingError:
    """A PowerShell terminating error: the pipeline ends Failed with this record."""

    message: str
    error_id: str = "ScriptFailed"
    category: ErrorCategory = ErrorCategory.NotSpecified


@dataclass
class ScriptOutcome:
    """What a pipeline produced: output objects, non-terminating errors, or a terminating error."""

    output: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    terminating: TerminatingError | None = None
    running: bool = False  # the pipeline never finishes (Receive keeps long-polling)


class ScriptExecutor(Protocol):
    """Runs one received script: (text, parameters, the command's useLocalScope) -> outcome."""

    def __call__(self, text: str, params: dict[str, Any], *, local_scope: bool | None = True) -> ScriptOutcome: ...


class WSManError(Exception):
    """A WS-Man fault the endpoint answers (its code, reason and subcode, as Windows sends them)."""

    def __init__(self, code: int, reason: str, subcode: str = "w:InternalError", *, code_value: str = "s:Receiver") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.subcode = subcode
        self.code_value = code_value


def command_params(command: Any) -> dict[str, Any]:
    """A pipeline command's parameters as the script runtime takes them: named ones by name,
    positional ones (name None) in order under `__positional__` (read by `commands.lab.runtime`)."""
    params: dict[str, Any] = {}
    positional: list[Any] = []
    for name, value in command.parameters:
        if name is None:
            positional.append(value)
        else:
            params[str(name)] = value
    if positional:
        params["__positional__"] = positional
    return params
