"""`/v1/snapshots`: live snapshots of running capsules into team templates, listing, deletion.

A snapshot's files live on the host of the capsule it was taken from; capsules created from it are
placed on that host (`capsules.scheduler`). Names are immutable: reusing one is a 409.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.wire.agent import AgentError, BadRequest, NotFound, SnapshotRequest
from wrenn_platform.wire.api.capsules import CreateSnapshotRequest, Template

from ..auth.principal import Principal, require_key_or_session
from ..capsules import states
from ..capsules.agents import agent_errors, to_api_error
from ..capsules.lifespan import get_capsules
from ..capsules.service import CapsuleService
from ..db.models import Template as TemplateRow
from ..deps import get_db
from ..errors import conflict, not_found, responses

router = APIRouter(tags=["snapshots"])


def template_out(row: TemplateRow) -> Template:
    return Template(name=row.name, type="snapshot", vcpus=row.vcpus, memory_mb=row.memory_mb,
                    size_bytes=row.size_bytes, created_at=row.created_at, platform=False,
                    metadata=dict(row.labels) if row.labels else None)


async def platform_templates(svc: CapsuleService) -> list[Template]:
    found: dict[str, Template] = {}
    for _, client in svc.agents.items():
        try:
            templates = await client.list_templates(None)
        except Exception:  # an unreachable host does not hide the others' templates
            continue
        for t in templates:
            if t.platform and t.name not in found:
                found[t.name] = Template(name=t.name, type=t.type, vcpus=t.vcpus, memory_mb=t.memory_mb,
                                         size_bytes=t.size_bytes, created_at=datetime.fromisoformat(t.created_at),
                                         platform=True, metadata=t.metadata or None)
    return list(found.values())


@router.post("/v1/snapshots", status_code=201, responses=responses(409))
async def create_snapshot(body: CreateSnapshotRequest, principal: Principal = Depends(require_key_or_session),
                          db: AsyncSession = Depends(get_db), svc: CapsuleService = Depends(get_capsules)) -> Template:
    capsule = await svc.owned(db, principal, body.sandbox_id)
    states.require(capsule, states.RUNNING, "snapshot")
    client = svc.agents.get(capsule.host_id)
    name = body.name or f"snap-{secrets.token_hex(4)}"
    if name in {t.name for t in await platform_templates(svc)}:
        raise conflict(f"template {name!r} already exists", code="already_exists")
    row = TemplateRow(team_id=principal.team_id, name=name, type="snapshot", host_id=capsule.host_id,
                      source_capsule_id=capsule.id, vcpus=capsule.vcpus, memory_mb=capsule.memory_mb)
    db.add(row)
    try:
        await db.commit()  # reserves the name before any file is written
    except IntegrityError:
        await db.rollback()
        raise conflict(f"template {name!r} already exists", code="already_exists") from None
    try:
        with agent_errors():
            made = await client.snapshot(capsule.id, SnapshotRequest(team_id=principal.team_id, name=name))
    except BaseException:
        await db.execute(delete(TemplateRow).where(TemplateRow.id == row.id))
        await db.commit()
        raise
    row.size_bytes = made.size_bytes
    row.labels = dict(made.metadata)
    await db.commit()
    return template_out(row)


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
    row = (await db.execute(select(TemplateRow).where(TemplateRow.team_id == principal.team_id,
                                                      TemplateRow.name == name))).scalar_one_or_none()
    if row is None:
        raise not_found(f"template {name!r} not found")
    client = svc.agents.get(row.host_id)
    try:
        await client.delete_template(principal.team_id, name)
    except NotFound:
        pass  # files already gone: drop the record anyway
    except BadRequest as exc:  # e.g. another snapshot is layered on it
        raise conflict(f"cannot delete template {name!r}: {exc.message}") from exc
    except AgentError as exc:
        raise to_api_error(exc) from exc
    await db.execute(delete(TemplateRow).where(TemplateRow.id == row.id))
    await db.commit()
    return Response(status_code=204)
