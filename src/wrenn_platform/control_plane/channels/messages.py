"""What a notification says: a title, facts and a colour from an event's payload (`SSEEvent`)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

OK, FAILED, INFO = 0x2ECC71, 0xE74C3C, 0x3498DB


@dataclass(frozen=True)
class Message:
    title: str
    facts: list[tuple[str, str]]
    color: int
    timestamp: str

    def text(self) -> str:
        return "\n".join([self.title, *(f"{name}: {value}" for name, value in self.facts)])

    def html(self) -> str:
        lines = [f"<b>{html.escape(self.title)}</b>"]
        lines += [f"<b>{html.escape(name)}:</b> {html.escape(value)}" for name, value in self.facts]
        return "\n".join(lines)


def message(payload: dict[str, Any]) -> Message:
    name = str(payload.get("event", "event"))
    outcome = payload.get("outcome")
    title = f"Wrenn: {name}" + {"success": " succeeded", "error": " failed"}.get(str(outcome), "")
    resource = payload.get("resource") or {}
    facts: list[tuple[str, str]] = []
    if resource:
        facts.append((str(resource.get("type") or "resource"), str(resource.get("id", ""))))
    if payload.get("error"):
        facts.append(("error", str(payload["error"])))
    actor = payload.get("actor") or {}
    if actor:
        facts.append(("by", f"{actor.get('name') or actor.get('id')} ({actor.get('type')})"))
    facts += [(str(k), str(v)) for k, v in (payload.get("metadata") or {}).items() if v != ""]
    color = FAILED if outcome == "error" or name == "host.down" else OK if outcome == "success" else INFO
    return Message(title=title, facts=facts, color=color, timestamp=str(payload.get("timestamp", "")))


def test_payload(timestamp: str) -> dict[str, Any]:
    return {"event": "test", "resource": {"id": "test", "type": "channel"},
            "metadata": {"message": "This is a test notification from Wrenn."}, "timestamp": timestamp}
