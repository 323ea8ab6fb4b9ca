"""Models of the events and audit routes (0.2.0 contract schemas: SSEEvent, AuditLogEntry)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from .capsules import Capsule

EventName = Literal[
    "connected", "capsule.create", "capsule.pause", "capsule.resume", "capsule.destroy", "capsule.state.changed",
    "template.snapshot.create", "template.snapshot.delete", "host.up", "host.down",
]


class SSEResource(BaseModel):
    id: str
    type: str


class SSEActor(BaseModel):
    type: Literal["user", "api_key", "system"]
    id: str
    name: str


class SSEEvent(BaseModel):
    """Wire format of one SSE message body. The event name (`event:` line) is the `kind` and the
    JSON below is the `data:` line."""

    event: EventName
    outcome: Literal["success", "error"] | None = None
    resource: SSEResource | None = None
    actor: SSEActor | None = None
    metadata: dict[str, str] | None = None
    error: str | None = None
    sandbox: Capsule | None = None
    timestamp: datetime


class AuditLogEntry(BaseModel):
    id: str
    actor_type: Literal["user", "api_key", "host", "system"]
    actor_id: str
    actor_name: str
    resource_type: str
    resource_id: str
    action: str
    scope: str
    status: Literal["success", "failure"]
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class AuditCursor(BaseModel):
    before: datetime
    before_id: str


class AuditLogPage(BaseModel):
    entries: list[AuditLogEntry]
    next_cursor: AuditCursor | None = None


class AdminAuditLogPage(BaseModel):
    """The contract's admin page has no `next_cursor`: the last entry's `created_at` and `id` are it."""

    entries: list[AuditLogEntry]
