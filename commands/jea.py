"""The JEA endpoint (DESIGN 12, DOMAIN 14): names, versions, and the files an admin installs.

With `configuration_name = "SstpBot"` the bot's account needs no administrator rights: it connects to
a Just Enough Administration session configuration that exposes one function per shipped script and
runs them as a temporary virtual administrator. This module is the single source of that endpoint:

- `function_name(script)`: `Invoke-SstpBot` + each `_`-separated word of the script name capitalised
  (`remoteaccess_state` -> `Invoke-SstpBotRemoteaccessState`); PowerShell compares command names
  case-insensitively, so `script_for_function` does too.
- `export_endpoint(folder, group)`: writes the module `SstpBot` (manifest, script module whose
  functions are the shipped scripts verbatim, role capability), the session configuration and the
  installer. Everything is generated from `commands.scripts` (the scripts list and `load_script`), so a
  script added, renamed or rewritten there is exported without touching this module.
- `module_version()` / `endpoint_outdated(...)`: which module version the bot expects, and the
  ENDPOINT_OUTDATED rule of DESIGN 4 applied to a snapshot's `endpoint` section.
"""

from __future__ import annotations

import importlib.metadata
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commands.errors import UsageError
from commands.files import write_file
from commands.scripts import SCRIPTS, load_script
from commands.version import is_bot_module
from commands.version import module_version as _module_version

DEFAULT_CONFIGURATION = "Microsoft.PowerShell"
CONFIGURATION_NAME = "SstpBot"
MODULE_NAME = "SstpBot"
ROLE_CAPABILITY = "SstpBot"
DEFAULT_GROUP = "SstpBot Operators"
FUNCTION_PREFIX = "Invoke-SstpBot"
RESOURCE_URI_PREFIX = "http://schemas.microsoft.com/powershell/"
# Where the installer keeps the session transcripts (DOMAIN 14: the server-side audit trail). A .pssc
# is a data file: no variables, so the folder is spelled out.
TRANSCRIPT_DIRECTORY = r"C:\ProgramData\SstpBot\Transcripts"
# Stable identities: the same module and role capability across versions (uuid5, not random).
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://sstp-bot.invalid/jea")
MODULE_GUID = str(uuid.uuid5(_NAMESPACE, "module"))
ROLE_GUID = str(uuid.uuid5(_NAMESPACE, "role-capability"))
SESSION_GUID = str(uuid.uuid5(_NAMESPACE, "session-configuration"))

# A group name goes into single-quoted PowerShell strings of generated files: no quote of any kind
# (PowerShell also takes the typographic ones as quotes), no control character, no character Windows
# refuses in a group name ("/\[]:;|=,+*?<>), and at most one backslash, after an optional
# DOMAIN (NetBIOS) prefix.
_GROUP_FORBIDDEN = "\"'`\u2018\u2019\u201a\u201b\u201c\u201d\u201e/[]:;|=,+*?<>@"
_GROUP_RE = re.compile(
    r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,14}\\)?(?P<name>[^\\"
    + re.escape(_GROUP_FORBIDDEN)
    + r"\x00-\x1f\x7f-\x9f\u2028\u2029]{1,256})\Z"
)

# Lines that do not survive being moved from a script file into a function of a module: `using` and
# `#Requires` apply to a whole file (tests/jea also keeps `exit` out of the scripts).
_FILE_SCOPED_RE = re.compile(r"(?im)^\s*(?:using\s+(?:namespace|module|assembly)\b|#requires\b)")


def function_name(script: str) -> str:
    """The JEA function that carries out `script` (DESIGN 12): `Invoke-SstpBot` + PascalCase name."""
    return FUNCTION_PREFIX + "".join(word.capitalize() for word in script.split("_"))


def function_names() -> list[str]:
    """Every exported function, in the order of the scripts list."""
    return [function_name(script) for script in SCRIPTS]


def script_for_function(command: str) -> str | None:
    """The script a function name stands for (case-insensitive, `SstpBot\\` prefix allowed), or None."""
    name = command.strip()
    prefix = MODULE_NAME.lower() + "\\"
    if name.lower().startswith(prefix):
        name = name[len(prefix) :]
    wanted = name.lower()
    return next((script for script in SCRIPTS if function_name(script).lower() == wanted), None)


def resource_uri(configuration_name: str) -> str:
    """The WS-Man resource URI a PSRP client opens for a session configuration (pypsrp's rule)."""
    return RESOURCE_URI_PREFIX + configuration_name


def bot_version() -> str:
    """The installed sstp-bot's version (the distribution's metadata)."""
    return importlib.metadata.version("sstp-bot")


def module_version(version: str | None = None) -> str:
    """The `ModuleVersion` for a bot version (default: the installed one); see commands.version."""
    try:
        return _module_version(version or bot_version())
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def endpoint_outdated(endpoint: Mapping[str, Any] | None, expected_version: str | None = None) -> bool:
    """DESIGN 4 `ENDPOINT_OUTDATED`: the probe ran through a JEA endpoint (a configuration name other
    than Microsoft.PowerShell) whose module version is missing or not the bot's. Never for the
    default endpoint, nor when the snapshot has no `endpoint`."""
    if not isinstance(endpoint, Mapping):
        return False
    configuration = endpoint.get("configuration_name")
    if not isinstance(configuration, str) or not configuration or configuration.lower() == DEFAULT_CONFIGURATION.lower():
        return False
    reported = endpoint.get("module_version")
    return not is_bot_module(reported if isinstance(reported, str) else None, expected_version)


def outdated_message(server: str, endpoint: Mapping[str, Any], expected_version: str | None = None) -> str:
    """What an admin reads when a fix is refused on an outdated endpoint, and how to mend it."""
    reported = endpoint.get("module_version") or "no version"
    return (
        f"The JEA endpoint {endpoint.get('configuration_name')} on {server} runs module {MODULE_NAME} {reported}, "
        f"not {module_version(expected_version)}: no fix runs through an endpoint older or newer than the bot. "
        "Reinstall it: `sstp-bot endpoint export DIR`, copy DIR to the server and run "
        "DIR\\Install-SstpBotEndpoint.ps1 as an administrator (docs/jea.md), then check again."
    )


def validate_group(group: str) -> str:
    """The `--group` value, checked: it is written into generated PowerShell files."""
    if not isinstance(group, str) or not _GROUP_RE.fullmatch(group) or group != group.strip() or "  " in group:
        raise UsageError(
            f"--group {group!r} is not a Windows group name this tool will write into the endpoint files: use "
            "NAME or DOMAIN\\NAME, without quotes, control characters, leading or trailing spaces, or any of "
            '" / \\ [ ] : ; | = , + * ? < > @'
        )
    return group


# --- the files ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedEndpoint:
    """What `export_endpoint` wrote."""

    folder: Path
    files: tuple[Path, ...]
    functions: tuple[str, ...]
    module_version: str
    group: str


def _ps_quote(value: str) -> str:
    """A single-quoted PowerShell string (a quote is doubled; values are validated before anyway)."""
    return "'" + value.replace("'", "''") + "'"


def _ps_list(values: list[str], indent: str) -> str:
    inner = "\n".join(f"{indent}    {_ps_quote(v)}" for v in values)
    return f"@(\n{inner}\n{indent})"


def _header(what: str, version: str) -> str:
    return (
        f"# {what}\n"
        f"# Generated by `sstp-bot endpoint export` for sstp-bot {version} (DESIGN 12). Do not edit:\n"
        "# export again from the bot's version instead, so the module and the bot stay in step.\n"
    )


def module_manifest(version: str) -> str:
    """SstpBot.psd1."""
    return (
        _header("Module manifest of SstpBot, the JEA endpoint of sstp-bot.", version)
        + "@{\n"
        + f"    RootModule = {_ps_quote(MODULE_NAME + '.psm1')}\n"
        + f"    ModuleVersion = {_ps_quote(version)}\n"
        + f"    GUID = {_ps_quote(MODULE_GUID)}\n"
        + "    Author = 'sstp-bot'\n"
        + "    Description = 'The functions sstp-bot calls through its JEA endpoint: one per shipped script.'\n"
        + "    PowerShellVersion = '5.1'\n"
        + f"    FunctionsToExport = {_ps_list(function_names(), '    ')}\n"
        + "    CmdletsToExport = @()\n"
        + "    VariablesToExport = @()\n"
        + "    AliasesToExport = @()\n"
        + "}\n"
    )


def script_module(version: str) -> str:
    """SstpBot.psm1: one function per shipped script, whose body is that script unchanged.

    The body is not indented: a here-string's closing `'@` must stay at the start of its line."""
    parts = [
        _header("Script module SstpBot: one function per script the bot ships (DESIGN 9, 12).", version),
        "# Each function's body is the script of that name, byte for byte, as the bot sends it to the\n"
        "# default endpoint: the same code runs through either endpoint. In a JEA session a module's\n"
        "# functions run with the module's full language; the session itself stays in NoLanguage mode.\n",
    ]
    for script in SCRIPTS:
        text = load_script(script)
        problem = _FILE_SCOPED_RE.search(text)
        if problem:
            raise UsageError(
                f"{script}.ps1 cannot become a function of the module: {problem.group(0).strip()!r} applies to a whole "
                "file; move it out of the script"
            )
        if not text.endswith("\n"):
            text += "\n"
        parts.append(f"\nfunction {function_name(script)} {{\n{text}}}\n")
    exports = ", ".join(_ps_quote(name) for name in function_names())
    parts.append(f"\nExport-ModuleMember -Function {exports}\n")
    return "".join(parts)


def role_capability(version: str) -> str:
    """RoleCapabilities/SstpBot.psrc: exactly the module's functions are visible, nothing else.

    No VisibleCmdlets, VisibleExternalCommands or VisibleProviders: the commands the functions call
    (netsh.exe, appcmd.exe, Get-Service, the Cert: and registry providers...) run inside the module,
    which JEA does not constrain (DOMAIN 14); the connecting account cannot call them itself."""
    return (
        _header("Role capability SstpBot: what members of the bot's group may run.", version)
        + "@{\n"
        + f"    GUID = {_ps_quote(ROLE_GUID)}\n"
        + "    Author = 'sstp-bot'\n"
        + "    Description = 'Run the sstp-bot functions, and nothing else.'\n"
        + f"    ModulesToImport = {_ps_quote(MODULE_NAME)}\n"
        + f"    VisibleFunctions = {_ps_list(function_names(), '    ')}\n"
        + "}\n"
    )


def session_configuration(version: str, group: str) -> str:
    """SstpBot.pssc: a RestrictedRemoteServer (NoLanguage) session run as a virtual administrator."""
    return (
        _header("Session configuration SstpBot (register with Install-SstpBotEndpoint.ps1).", version)
        + "@{\n"
        + "    SchemaVersion = '2.0.0.0'\n"
        + f"    GUID = {_ps_quote(SESSION_GUID)}\n"
        + "    Author = 'sstp-bot'\n"
        + f"    Description = {_ps_quote(f'sstp-bot {version}: check and fix SSTP certificate bindings without administrator rights')}\n"
        + "    SessionType = 'RestrictedRemoteServer'\n"
        + f"    TranscriptDirectory = {_ps_quote(TRANSCRIPT_DIRECTORY)}\n"
        + "    RunAsVirtualAccount = $true\n"
        + f"    RoleDefinitions = @{{ {_ps_quote(group)} = @{{ RoleCapabilities = {_ps_quote(ROLE_CAPABILITY)} }} }}\n"
        + "}\n"
    )


def installer(version: str, group: str) -> str:
    """Install-SstpBotEndpoint.ps1: copy the module, register (or re-register) the configuration."""
    return _INSTALLER.format(
        header=_header("Installs the sstp-bot JEA endpoint on this server (docs/jea.md).", version),
        module=_ps_quote(MODULE_NAME),
        configuration=_ps_quote(CONFIGURATION_NAME),
        version=_ps_quote(version),
        group=_ps_quote(group),
        transcripts=_ps_quote(TRANSCRIPT_DIRECTORY),
    )


_INSTALLER = """{header}#
# Run it as an administrator from the exported folder:  .\\Install-SstpBotEndpoint.ps1
# It is idempotent: run it again after every upgrade of the bot (the module version must match).
#   1. checks that the group the role is granted to exists (-CreateLocalGroup creates a local one);
#   2. copies the module SstpBot to $env:ProgramFiles\\WindowsPowerShell\\Modules\\SstpBot, unless the
#      same files are already there;
#   3. creates the transcript folder, readable only by Administrators and SYSTEM;
#   4. registers the session configuration SstpBot, or re-registers it when SstpBot.pssc changed.
# Registering restarts WinRM, which drops every remote session, this one too if you run it remotely:
# pass -NoServiceRestart there and restart WinRM afterwards.
#Requires -Version 5.1
#Requires -RunAsAdministrator
[CmdletBinding()]
param(
    [switch]$CreateLocalGroup,
    [switch]$NoServiceRestart
)

Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'

$ModuleName = {module}
$ConfigurationName = {configuration}
$ModuleVersion = {version}
$Group = {group}
$TranscriptDirectory = {transcripts}
$Source = Join-Path $PSScriptRoot $ModuleName
$SessionFile = Join-Path $PSScriptRoot ($ConfigurationName + '.pssc')
$Target = Join-Path $env:ProgramFiles ('WindowsPowerShell\\Modules\\' + $ModuleName)
$RegisteredCopy = Join-Path $Target ($ConfigurationName + '.pssc')

function Get-FolderHashes([string]$Path) {{
    # Relative path -> SHA-256 of every file under $Path (empty when the folder is missing).
    $hashes = @{{}}
    if (Test-Path -LiteralPath $Path -PathType Container) {{
        $root = (Resolve-Path -LiteralPath $Path).ProviderPath.TrimEnd('\\') + '\\'
        foreach ($file in Get-ChildItem -LiteralPath $Path -Recurse -File) {{
            $hashes[$file.FullName.Substring($root.Length)] = (Get-FileHash -LiteralPath $file.FullName -Algorithm SHA256).Hash
        }}
    }}
    return $hashes
}}

function Test-SameHashes($Left, $Right) {{
    if ($Left.Count -ne $Right.Count) {{ return $false }}
    foreach ($name in $Left.Keys) {{
        if (-not $Right.ContainsKey($name) -or $Right[$name] -ne $Left[$name]) {{ return $false }}
    }}
    return $true
}}

if (-not (Test-Path -LiteralPath (Join-Path $Source ($ModuleName + '.psd1')) -PathType Leaf) -or
    -not (Test-Path -LiteralPath $SessionFile -PathType Leaf)) {{
    throw "Run this script from the folder 'sstp-bot endpoint export' wrote: $Source or $SessionFile is missing."
}}

# 1. The group the role is granted to must resolve, or Windows refuses every connection.
try {{
    [void][System.Security.Principal.NTAccount]::new($Group).Translate([System.Security.Principal.SecurityIdentifier])
    Write-Output "Group '$Group' found."
}} catch {{
    if ($CreateLocalGroup -and $Group -notmatch '\\\\') {{
        New-LocalGroup -Name $Group -Description 'Accounts sstp-bot uses to reach its JEA endpoint' | Out-Null
        Write-Output "Created the local group '$Group': add the bot's account to it."
    }} else {{
        throw "The group '$Group' does not exist on this server or in its domain. Create it (or pass -CreateLocalGroup for a local group), or export again with --group DOMAIN\\NAME."
    }}
}}

# 2. The module.
$configurationChanged = -not (Test-Path -LiteralPath $RegisteredCopy -PathType Leaf) -or
    ((Get-FileHash -LiteralPath $RegisteredCopy -Algorithm SHA256).Hash -ne (Get-FileHash -LiteralPath $SessionFile -Algorithm SHA256).Hash)
$installed = Get-FolderHashes $Target
if ($installed.ContainsKey($ConfigurationName + '.pssc')) {{ $installed.Remove($ConfigurationName + '.pssc') }}
if (Test-SameHashes (Get-FolderHashes $Source) $installed) {{
    Write-Output "Module $ModuleName $ModuleVersion already installed in $Target (unchanged)."
}} else {{
    if (Test-Path -LiteralPath $Target) {{ Remove-Item -LiteralPath $Target -Recurse -Force }}
    Copy-Item -LiteralPath $Source -Destination $Target -Recurse
    Write-Output "Module $ModuleName $ModuleVersion installed in $Target."
}}
Copy-Item -LiteralPath $SessionFile -Destination $RegisteredCopy -Force

# 3. Transcripts: the server-side record of every session, for auditors, not for the bot's account.
if (-not (Test-Path -LiteralPath $TranscriptDirectory -PathType Container)) {{
    New-Item -ItemType Directory -Path $TranscriptDirectory -Force | Out-Null
    & icacls.exe $TranscriptDirectory /inheritance:r /grant:r '*S-1-5-32-544:(OI)(CI)F' '*S-1-5-18:(OI)(CI)F' | Out-Null
    Write-Output "Transcript folder $TranscriptDirectory created (Administrators and SYSTEM only)."
}}

# 4. The session configuration.
if (-not (Test-PSSessionConfigurationFile -Path $SessionFile)) {{
    throw "$SessionFile is not a valid session configuration file: export it again with sstp-bot endpoint export."
}}
$existing = Get-PSSessionConfiguration -Name $ConfigurationName -ErrorAction SilentlyContinue
$restart = @{{}}
if ($NoServiceRestart) {{ $restart['NoServiceRestart'] = $true }}
if ($null -ne $existing -and -not $configurationChanged) {{
    Write-Output "Session configuration $ConfigurationName already registered (unchanged)."
}} else {{
    if ($null -ne $existing) {{
        Unregister-PSSessionConfiguration -Name $ConfigurationName -Force -NoServiceRestart
    }}
    Register-PSSessionConfiguration -Name $ConfigurationName -Path $SessionFile -Force @restart | Out-Null
    $verb = if ($null -ne $existing) {{ 're-registered' }} else {{ 'registered' }}
    Write-Output "Session configuration $ConfigurationName $verb for '$Group'."
    if ($NoServiceRestart) {{ Write-Output 'Restart WinRM (Restart-Service WinRM) for it to take effect.' }}
}}
Write-Output "Done: set configuration_name = `"$ConfigurationName`" for this server in sstp-bot.toml."
"""


def export_endpoint(folder: str | Path, group: str = DEFAULT_GROUP, version: str | None = None) -> ExportedEndpoint:
    """Write the JEA endpoint into `folder` (created if missing): the module folder `SstpBot/`,
    `SstpBot.pssc` and `Install-SstpBotEndpoint.ps1`. Files are UTF-8 with a byte-order mark, which
    Windows PowerShell 5.1 needs to read anything but ASCII correctly."""
    group = validate_group(group)
    version = module_version(version)
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} exists and is not a folder")
    contents = {
        Path(MODULE_NAME, f"{MODULE_NAME}.psd1"): module_manifest(version),
        Path(MODULE_NAME, f"{MODULE_NAME}.psm1"): script_module(version),
        Path(MODULE_NAME, "RoleCapabilities", f"{ROLE_CAPABILITY}.psrc"): role_capability(version),
        Path(f"{CONFIGURATION_NAME}.pssc"): session_configuration(version, group),
        Path("Install-SstpBotEndpoint.ps1"): installer(version, group),
    }
    written = []
    for relative, text in contents.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, text.encode("utf-8-sig"))  # \n line ends as written; a BOM for Windows PowerShell 5.1
        written.append(path)
    return ExportedEndpoint(root, tuple(written), tuple(function_names()), version, group)
