"""The rule families of DESIGN 4, each detecting its findings and proposing each one's remedy.

`detect_all` runs the families in order over one `Analysis`; a family sees what the families before
it detected (the client view uses that to tell whether the server's own state explains what a client
sees). `CATALOGUE` maps every finding ID (each family's `Id` enum) to the family that raises it;
docs/findings.md is tested against it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import ModuleType

from commands.analysis import Analysis
from commands.rules import bindings, certificate, client_view, endpoint, runtime
from commands.rules.base import Detected

#: Every finding ID (DESIGN 4): each family declares its own, so adding one touches only its family.
FindingId = runtime.Id | endpoint.Id | bindings.Id | certificate.Id | client_view.Id
Family = Callable[[Analysis, Sequence[Detected]], list[Detected]]
FAMILIES: tuple[ModuleType, ...] = (runtime, endpoint, bindings, certificate, client_view)

CATALOGUE: Mapping[str, str] = {
    id: module.__name__.rsplit(".", 1)[-1] for module in FAMILIES for id in module.FINDINGS
}
FIXABLE_IDS: frozenset[str] = frozenset(id for module in FAMILIES for id in module.FIXABLE)


def detect_all(a: Analysis) -> list[Detected]:
    """Every finding of every family, in family order, with the remedies they propose."""
    detected: list[Detected] = []
    for module in FAMILIES:
        detected.extend(module.detect(a, tuple(detected)))
    return detected
