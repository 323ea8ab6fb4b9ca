"""`record_audit`: add an audit entry to the caller's session, committed with the change it records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ..db.models import AuditLog
from ..db.types import utcnow
from .actor import Actor, current_actor


def record_audit(
    db: AsyncSession | Session,
    *,
    action: str,
    resource_type: str,
    resource_id: str,
    team_id: str | None,
    scope: str | None = None,
    status: str = "success",
    metadata: Mapping[str, Any] | None = None,
    actor: Actor | None = None,
) -> AuditLog:
    """`scope` defaults to `team` for a team's resource and `platform` otherwise."""
    who = actor or current_actor()
    row = AuditLog(
        team_id=team_id, actor_type=who.type, actor_id=who.id, actor_name=who.name,
        resource_type=resource_type, resource_id=resource_id, action=action,
        scope=scope or ("team" if team_id else "platform"), status=status,
        metadata_=dict(metadata or {}), created_at=utcnow(),
    )
    db.add(row)
    return row
