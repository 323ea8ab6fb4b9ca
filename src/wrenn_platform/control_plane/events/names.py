"""Event names of the contract (`SSEEvent.event`) and which of them channels may subscribe to."""

from __future__ import annotations

from typing import Literal

CONNECTED = "connected"
STATE_CHANGED = "capsule.state.changed"

# Events that report the end of an action: they carry `outcome` (and `error` when it failed).
ACTION_EVENTS = frozenset({
    "capsule.create", "capsule.pause", "capsule.resume", "capsule.destroy",
    "template.snapshot.create", "template.snapshot.delete",
})

ChannelEvent = Literal[
    "capsule.create", "capsule.pause", "capsule.resume", "capsule.destroy",
    "template.snapshot.create", "template.snapshot.delete", "host.up", "host.down",
]
CHANNEL_EVENTS: tuple[str, ...] = ChannelEvent.__args__  # type: ignore[attr-defined]
