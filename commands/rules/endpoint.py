"""Rule family: the PSRP endpoint the probe ran in (DESIGN 12 [2]).

ENDPOINT_OUTDATED: the probe ran through the JEA endpoint and its module is not the bot's version.
Checks still run; every fix is refused until the endpoint is reinstalled (`blocks_fixes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from commands.analysis import Analysis
from commands.rules.base import Collected, Detected, finding
from commands.version import bot_version, is_bot_module

DEFAULT_CONFIGURATION = "microsoft.powershell"
REINSTALL = (
    "Reinstall the endpoint: run `sstp-bot endpoint export DIR` on the bot's host, copy DIR to the "
    "server and run `Install-SstpBotEndpoint.ps1` there as an administrator (DESIGN 12), then check again."
)



class Id(StrEnum):
    """The finding IDs this family raises (DESIGN 4), str-valued: JSON and text comparisons stay the same."""

    ENDPOINT_OUTDATED = "ENDPOINT_OUTDATED"


# What the catalogue reads (docs/findings.md is tested against it): every ID, and those a remedy can resolve.
FINDINGS: frozenset[Id] = frozenset(Id)
FIXABLE: frozenset[Id] = frozenset()


def detect(a: Analysis, prior: Sequence[Detected] = (), *, expected: str | None = None) -> list[Detected]:
    """ENDPOINT_OUTDATED when the JEA module's version is missing or not `expected` (the bot's)."""
    endpoint = a.snapshot.endpoint
    if endpoint is None or not endpoint.configuration_name:
        return []
    if endpoint.configuration_name.strip().lower() == DEFAULT_CONFIGURATION:
        return []
    wanted = expected if expected is not None else bot_version()
    if is_bot_module(endpoint.module_version, wanted):
        return []
    out = Collected()
    found = endpoint.module_version or "no version"
    out.add(
        finding(
            Id.ENDPOINT_OUTDATED,
            "critical",
            f"The JEA endpoint {endpoint.configuration_name} runs SstpBot module {found}, not the bot's {wanted or 'version'}",
            "The probe ran through the least-privilege endpoint, whose functions are copies of the bot's "
            "scripts made when it was installed. An endpoint from another version may not do what the "
            "bot's plan expects, so fixes are refused until it matches. " + REINSTALL,
            configuration_name=endpoint.configuration_name,
            module_version=endpoint.module_version,
            expected_version=wanted,
            language_mode=endpoint.language_mode,
        ),
        blocks_fixes="No automatic fix while the JEA endpoint is outdated (see ENDPOINT_OUTDATED). " + REINSTALL,
    )
    return out.items
