"""What the Slack adapter needs from the use-case layer (`bot.service.Service`).

Written as a Protocol so the adapter can be tested against an in-memory fake and does not care
whether it talks to the real service. Plan and history records are read by attribute only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from bot.config import Config
from bot.service import Actor, CheckOutcome, FixOutcome
from commands.server import ServerConfig
from storage.records import PlanRecord


class ServicePort(Protocol):
    """The subset of `bot.service.Service` the Slack adapter calls."""

    config: Config

    def resolve_targets(
        self, names: Sequence[str] = (), *, all_servers: bool = False, group: str | None = None
    ) -> list[ServerConfig]: ...

    def check(
        self,
        servers: Sequence[ServerConfig],
        actor: Any,
        *,
        on_result: Callable[[CheckOutcome], None] | None = None,
        wait: bool = True,
        on_busy: Callable[[ServerConfig], None] | None = None,
        propose: bool = True,
    ) -> Sequence[CheckOutcome]: ...

    def attach_message(self, plan_id: int, channel: str, ts: str) -> None: ...

    def get_plan(self, plan_id: int) -> PlanRecord: ...

    def approve(self, plan_id: int, actor: Any, *, authorised: bool) -> PlanRecord: ...

    def reject(self, plan_id: int, actor: Any, *, authorised: bool) -> PlanRecord: ...

    def execute(
        self,
        plan_id: int,
        actor: Any,
        *,
        progress: Callable[[int, int, dict[str, Any]], None] | None = None,
        waiting: Callable[[int], None] | None = None,
    ) -> FixOutcome: ...

    def history(self, server: str | None = None, limit: int = 20) -> Sequence[Any]: ...

    def status(self) -> Sequence[Any]: ...

    def audit(
        self,
        *,
        actor: str,
        action: str,
        outcome: str,
        server: str | None = None,
        plan_id: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None: ...


def slack_actor(user_id: str) -> Actor:
    """The service's `Actor` for a Slack user (the user ID is the actor ID)."""
    return Actor(id=user_id, source="slack")
