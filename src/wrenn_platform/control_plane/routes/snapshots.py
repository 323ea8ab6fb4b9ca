"""`/v1/snapshots`: live snapshots of running capsules into team templates, listing, deletion.

A snapshot's files live on the host of the capsule it was taken from; capsules created from it are
placed on that host (`capsules.scheduler`). Names are immutable: reusing one is a 409 (unless
`?overwrite=true`, the published client's extension, replaces the team's snapshot). Taking and deleting
one are `capsules/snapshots.take` and `remove`, which the admin routes and builds call too.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.wire.api.capsules import CreateSnapshotRequest, Template

from ..auth.principal import Principal, require_key_or_session
from ..capsules.lifespan import get_capsules
from ..capsules.service import CapsuleService
from ..capsules.snapshots import platform_templates, remove, take, template_out
from ..db.models import Template as TemplateRow
from ..deps import get_db
from ..errors import responses

router = APIRouter(tags=["snapshots"])


@router.post("/v1/snapshots", status_code=201, responses=responses(409))
async def create_snapshot(body: CreateSnapshotRequest, principal: Principal = Depends(require_key_or_session),
                          db: AsyncSession = Depends(get_db), svc: CapsuleService = Depends(get_capsules),
                          overwrite: bool = Query(False, include_in_schema=False)) -> Template:
    # `?overwrite=true` is the published client's (`create_snapshot(overwrite=True)`), not the contract's.
    return await take(svc, db, principal, body.sandbox_id, body.name, overwrite=overwrite)


@router.get("/v1/snapshots")
async def list_snapshots(type: Literal["base", "snapshot"] | None = Query(None),
                         principal: Principal = Depends(require_key_or_session),
                         db: AsyncSession = Depends(get_db),
                         svc: CapsuleService = Depends(get_capsules)) -> list[Template]:
    result: list[Template] = []
    if type in (None, "base"):
        result += [t for t in await platform_templates(svc) if type is None or t.type == type]
    if type in (None, "snapshot"):
        rows = (await db.execute(select(TemplateRow).where(TemplateRow.team_id == principal.team_id)
                                 .order_by(TemplateRow.created_at))).scalars().all()
        result += [template_out(r) for r in rows]
    return result


@router.delete("/v1/snapshots/{name}", status_code=204, responses=responses(404))
async def delete_snapshot(name: str, principal: Principal = Depends(require_key_or_session),
                          db: AsyncSession = Depends(get_db), svc: CapsuleService = Depends(get_capsules)) -> Response:
    await remove(svc, db, principal.team_id, name)
    return Response(status_code=204)
