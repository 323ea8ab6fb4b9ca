"""`/v1/audit-logs` (the session's team) and `/v1/admin/audit-logs` (every team), newest first.

Pages follow the contract's cursor: pass the previous page's `next_cursor` as `before` and
`before_id`. The admin page has no `next_cursor` field in the contract; its last entry's
`created_at` and `id` are the cursor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from ...wire.api.events import AdminAuditLogPage, AuditCursor, AuditLogEntry, AuditLogPage
from ..audit.pages import page
from ..auth.principal import Principal, require_admin, require_session
from ..db.models import AuditLog
from ..deps import get_db
from ..errors import forbidden
from ..permissions import ID_PATTERN

router = APIRouter(tags=["audit"])

Before = Annotated[datetime | None, Query()]
BeforeId = Annotated[str | None, Query(pattern=ID_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=200)]


def _entry(row: AuditLog) -> AuditLogEntry:
    return AuditLogEntry(
        id=row.id, actor_type=row.actor_type, actor_id=row.actor_id, actor_name=row.actor_name,
        resource_type=row.resource_type, resource_id=row.resource_id, action=row.action, scope=row.scope,
        status=row.status, metadata=row.metadata_ or {}, created_at=row.created_at,
    )


@router.get("/v1/audit-logs", response_model=AuditLogPage, operation_id="listAuditLogs")
async def list_audit_logs(
    before: Before = None, before_id: BeforeId = None, limit: Limit = 50,
    principal: Principal = Depends(require_session), db: AsyncSession = Depends(get_db),
) -> AuditLogPage:
    if principal.role is None:
        raise forbidden("not a member of this team")
    rows, more = await page(db, team_id=principal.team_id, before=before, before_id=before_id, limit=limit)
    cursor = AuditCursor(before=rows[-1].created_at, before_id=rows[-1].id) if more else None
    return AuditLogPage(entries=[_entry(r) for r in rows], next_cursor=cursor)


@router.get("/v1/admin/audit-logs", response_model=AdminAuditLogPage, operation_id="adminListAuditLogs",
            tags=["admin"])
async def admin_list_audit_logs(
    before: Before = None, before_id: BeforeId = None, limit: Limit = 50,
    _: Principal = Depends(require_admin), db: AsyncSession = Depends(get_db),
) -> AdminAuditLogPage:
    rows, _more = await page(db, team_id=None, before=before, before_id=before_id, limit=limit)
    return AdminAuditLogPage(entries=[_entry(r) for r in rows])
