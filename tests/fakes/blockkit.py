"""Assertions that a Block Kit payload (as sent to the fake Web API) respects Slack's limits."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import Block


def assert_slack_limits(payload: dict[str, Any]) -> None:
    """`payload` is the body of chat.postMessage/chat.update/chat.postEphemeral (or has `blocks`)."""
    blocks = payload.get("blocks") or []
    assert len(blocks) <= 50, f"{len(blocks)} blocks"
    assert len(str(payload.get("text") or "")) <= 40_000
    for raw in blocks:
        block = Block.parse(raw)
        assert block is not None, raw
        block.validate_json()  # the SDK's own limits, per block type
        if raw["type"] == "section":
            # Slack refuses a section without text or fields, and one whose text is empty (invalid_blocks)
            assert raw.get("text") or raw.get("fields"), raw
        if raw["type"] == "section" and "text" in raw:
            assert raw["text"]["text"].strip(), "a section with empty text"
            assert len(raw["text"]["text"]) <= 3000
        if raw["type"] == "header":
            assert len(raw["text"]["text"]) <= 150
        for element in raw.get("elements") or []:
            if element.get("type") == "button":
                assert len(element.get("value", "")) <= 2000
                confirm = element.get("confirm")
                if confirm:
                    assert len(confirm["text"]["text"]) <= 300


def buttons(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in payload.get("blocks") or [] if b["type"] == "actions" for e in b["elements"]]


def all_text(payload: dict[str, Any]) -> str:
    """Every visible text of a payload, joined (for `in` assertions)."""
    parts: list[str] = [str(payload.get("text") or "")]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    parts.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(payload.get("blocks") or [])
    return "\n".join(parts)
