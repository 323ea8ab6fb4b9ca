"""Cursor pages of the audit log, newest first: ordered by (created_at, id), both descending, so a
cursor (the last entry's `created_at` and `id`) continues exactly after it — no gaps, no repeats,
even among entries with the same timestamp."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import AuditLog
from ..errors import bad_request


async def page(db: AsyncSession, *, team_id: str | None, before: datetime | None, before_id: str | None,
               limit: int) -> tuple[list[AuditLog], bool]:
    """Up to `limit` entries (of `team_id`, or of everyone for None) and whether more follow."""
    query = select(AuditLog)
    if team_id is not None:
        query = query.where(AuditLog.team_id == team_id)
    if before is not None and before.tzinfo is None:
        before = before.replace(tzinfo=UTC)
    if before is None and before_id is not None:
        before = await db.scalar(query.with_only_columns(AuditLog.created_at).where(AuditLog.id == before_id))
        if before is None:
            raise bad_request("before_id: no such audit log entry")
    if before is not None and before_id is not None:
        query = query.where(or_(AuditLog.created_at < before,
                                and_(AuditLog.created_at == before, AuditLog.id < before_id)))
    elif before is not None:
        query = query.where(AuditLog.created_at < before)
    rows = list((await db.scalars(query.order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
                                  .limit(limit + 1))).all())
    return rows[:limit], len(rows) > limit
