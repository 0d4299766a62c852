"""The lab's JEA mode (DESIGN 10, 12): a lab server behind the `SstpBot` session configuration.

A real JEA endpoint (DOMAIN 14) accepts connections only to its configuration, runs the session in
NoLanguage mode (script text is refused), resolves only the commands the role capability makes
visible, and runs the module's functions with full language as a virtual administrator. Here:

- the WS-Man resource URI must be `http://schemas.microsoft.com/powershell/SstpBot`; the default
  `Microsoft.PowerShell` answers "Access is denied." (the bot's account is not an administrator), any
  other name "Cannot find the ... session configuration" (Windows' wording);
- script text fails with Windows' NoLanguage error (`ScriptsNotAllowed`), another command with
  "The term 'X' is not recognized ..." (`CommandNotFoundException`);
- a function call is carried out by the SAME script runtime as the default endpoint, handed the text
  of the script the function is made of (`commands.jea.script_for_function` + `load_script`): a
  function of the exported module is that script, so the lab runs it the way it runs the script;
- the probe's output carries `endpoint` (DESIGN 3): the configuration name, the installed module
  version (the bot's unless a test says otherwise; `reinstall()` brings it back) and NoLanguage.

Every pipeline received is logged in `invocations`, so a test can assert that no script text reached
the server.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psrpcore.types import ErrorCategory

from commands.jea import (
    CONFIGURATION_NAME,
    DEFAULT_CONFIGURATION,
    module_version,
    resource_uri,
    script_for_function,
)
from commands.lab.outcomes import ScriptExecutor, ScriptOutcome, TerminatingError, WSManError, command_params
from commands.scripts import load_script

log = logging.getLogger(__name__)

# PowerShell's own wording (ParserStrings.ScriptsNotAllowed, and the CommandNotFoundException message).
NO_LANGUAGE_MESSAGE = "The syntax is not supported by this runspace. This can occur if the runspace is in no-language mode."
NOT_RECOGNIZED_MESSAGE = (
    "The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable program. "
    "Check the spelling of the name, or if a path was included, verify that the path is correct and try again."
)
# What SessionType = 'RestrictedRemoteServer' makes visible besides the role's functions (Microsoft
# Learn, "JEA session configurations"). The lab recognises them but does not emulate them.
RESTRICTED_REMOTE_SERVER_COMMANDS = (
    "Clear-Host", "Exit-PSSession", "Get-Command", "Get-FormatData", "Get-Help", "Measure-Object",
    "Out-Default", "Select-Object",
)
ACCESS_DENIED_CODE = 5
CONFIGURATION_NOT_FOUND_CODE = 2150858770


@dataclass(frozen=True)
class Invocation:
    """One pipeline a JEA lab server received, and what became of it."""

    command: str  # the function name, or the script text's first line
    is_script: bool
    parameters: tuple[str, ...]
    accepted: bool
    script: str | None = None  # the shipped script the function stands for


@dataclass
class JeaMode:
    """The JEA session configuration of one lab server, in front of its script runtime."""

    executor: ScriptExecutor
    module_version: str = field(default_factory=module_version)
    configuration_name: str = CONFIGURATION_NAME
    invocations: list[Invocation] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def resource_uri(self) -> str:
        return resource_uri(self.configuration_name)

    @property
    def scripts_received(self) -> int:
        """How many pipelines carried script text (each was refused)."""
        with self._lock:
            return sum(1 for i in self.invocations if i.is_script)

    def reinstall(self, version: str | None = None) -> None:
        """What Install-SstpBotEndpoint.ps1 does to the module version: the bot's, unless told."""
        self.module_version = module_version(version)

    def clear_log(self) -> None:
        with self._lock:
            self.invocations.clear()

    # --- WS-Man ---------------------------------------------------------------------------------

    def check_resource_uri(self, uri: str, computer: str) -> None:
        """Raise the WS-Man fault Windows answers for a configuration other than this endpoint's."""
        if uri.lower() == self.resource_uri.lower():
            return
        if uri.lower() == resource_uri(DEFAULT_CONFIGURATION).lower():
            # The administrator endpoint exists, but the bot's account is not an administrator.
            raise WSManError(ACCESS_DENIED_CODE, "Access is denied.", "w:AccessDenied")
        name = uri.rsplit("/", 1)[-1]
        raise WSManError(
            CONFIGURATION_NOT_FOUND_CODE,
            f"The WS-Management service cannot process the request. Cannot find the {name} session configuration "
            f"in the WSMan: drive on the {computer} computer.",
        )

    # --- PSRP pipelines -------------------------------------------------------------------------

    def run(self, commands: Sequence[Any]) -> ScriptOutcome:
        """Answer one pipeline (psrpcore `Command` objects) as a NoLanguage JEA session would."""
        for command in commands:
            if command.is_script:
                first_line = str(command.command_text).lstrip("\ufeff").split("\n", 1)[0][:120]
                self._log(Invocation(first_line, True, _names(command), False))
                return _terminating(NO_LANGUAGE_MESSAGE, "ScriptsNotAllowed", ErrorCategory.ParserError)
        if len(commands) != 1:
            for command in commands:
                self._log(Invocation(str(command.command_text), False, _names(command), False))
            return _terminating(
                "This lab's JEA endpoint runs one command per pipeline.", "UnsupportedPipeline",
                ErrorCategory.InvalidOperation,
            )
        command = commands[0]
        name = str(command.command_text)
        script = script_for_function(name)
        if script is None:
            self._log(Invocation(name, False, _names(command), False))
            if name.lower() in (c.lower() for c in RESTRICTED_REMOTE_SERVER_COMMANDS):
                return _terminating(
                    f"{name} is visible on a JEA endpoint, but this lab does not emulate it.", "NotEmulated",
                    ErrorCategory.NotImplemented,
                )
            return _terminating(
                NOT_RECOGNIZED_MESSAGE.format(name=name), "CommandNotFoundException", ErrorCategory.ObjectNotFound
            )
        self._log(Invocation(name, False, _names(command), True, script))
        # The function's body is the script, its parameters the script's: the same runtime answers.
        outcome = self.executor(load_script(script), command_params(command), local_scope=True)
        if script == "probe":
            outcome = self._with_endpoint(outcome)
        return outcome

    def _with_endpoint(self, outcome: ScriptOutcome) -> ScriptOutcome:
        """The probe run as a function of the module reports the endpoint (DESIGN 3, 12)."""
        if outcome.terminating is not None or len(outcome.output) != 1 or not isinstance(outcome.output[0], str):
            return outcome
        try:
            snapshot = json.loads(outcome.output[0])
        except json.JSONDecodeError:
            return outcome  # a bad_json fault stays what it is
        if not isinstance(snapshot, dict):
            return outcome
        snapshot["endpoint"] = {
            "configuration_name": self.configuration_name,
            "module_version": self.module_version,
            "language_mode": "NoLanguage",
        }
        return ScriptOutcome(output=[json.dumps(snapshot, separators=(",", ":"))], errors=outcome.errors)

    def _log(self, invocation: Invocation) -> None:
        with self._lock:
            self.invocations.append(invocation)


def outdated_version() -> str:
    """A module version other than the bot's: what a server not yet upgraded with the bot runs."""
    return "0.0.1" if module_version() != "0.0.1" else "0.0.2"


def _names(command: Any) -> tuple[str, ...]:
    return tuple(str(key) for key, _ in command.parameters if key is not None)


def _terminating(message: str, error_id: str, category: ErrorCategory) -> ScriptOutcome:
    return ScriptOutcome(terminating=TerminatingError(message, error_id, category))
