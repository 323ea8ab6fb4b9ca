"""Live snapshots of a running capsule into a template of the caller's team, shared by the tenant route
(`routes/snapshots.py`), the admin one (`routes/admin_capsules.py`, the admin scoped to the capsule's
team) and template builds; deleting one, by the tenant route and the admin template route.

The template row is committed first, with `size_bytes` 0, so the name is reserved before any file is
written; it is filled in once the agent has written the snapshot, or deleted if that failed (both
changes are what the event and audit records derive from, `events/derive.py`).
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.wire.agent import AgentError, BadRequest, NotFound, SnapshotRequest
from wrenn_platform.wire.api.capsules import Template
from wrenn_platform.wire.start import StartCommand

from ..auth.principal import Principal
from ..db.models import Capsule
from ..db.models import Template as TemplateRow
from ..errors import ApiError, conflict, not_found
from ..team_limits import check_new_snapshot
from . import states
from .agents import agent_errors, to_api_error
from .service import CapsuleService

log = logging.getLogger(__name__)


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


async def take(svc: CapsuleService, db: AsyncSession, principal: Principal, capsule_id: str,
               name: str | None, start: StartCommand | None = None, overwrite: bool = False) -> Template:
    """Snapshot the principal's running capsule into template `name` (generated if None) of the
    principal's team: 404 no such capsule, 409 not running or the name taken — unless `overwrite`,
    which first deletes the team's snapshot of that name as `remove` does (409 while it is in use).
    With `start` (builds) the agent starts that service and waits until it is ready first; the
    template runs it."""
    capsule = await svc.owned(db, principal, capsule_id)
    states.require(capsule, states.RUNNING, "snapshot")
    client = svc.agents.get(capsule.host_id)
    name = name or f"snap-{secrets.token_hex(4)}"
    if name in {t.name for t in await platform_templates(svc)}:
        raise conflict(f"template {name!r} already exists", code="already_exists")
    if overwrite and await team_template(db, principal.team_id, name) is not None:
        await remove(svc, db, principal.team_id, name)
    async with svc.team_lock(principal.team_id):
        await check_new_snapshot(db, principal.team_id, svc.settings)
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
            made = await client.snapshot(capsule.id, SnapshotRequest(team_id=principal.team_id, name=name,
                                                                      start=start))
    except BaseException as exc:
        reason = exc.message if isinstance(exc, ApiError) else f"interrupted ({type(exc).__name__})"
        log.warning("snapshot of capsule %s into %r failed: %s", capsule.id, name, reason)
        # The reason rides on the row being deleted (the failure event is derived from that delete)
        # and stays on the capsule, which keeps running, as `metadata.error`.
        await db.execute(update(TemplateRow).where(TemplateRow.id == row.id).values(labels={"error": reason}))
        await db.execute(delete(TemplateRow).where(TemplateRow.id == row.id))
        await db.execute(update(Capsule).where(Capsule.id == capsule.id).values(error=f"snapshot failed: {reason}"))
        await db.commit()
        raise
    row.size_bytes = made.size_bytes
    row.labels = dict(made.metadata)
    capsule.error = ""
    await db.commit()
    return template_out(row)


async def team_template(db: AsyncSession, team_id: str, name: str) -> TemplateRow | None:
    found: TemplateRow | None = (await db.execute(select(TemplateRow).where(
        TemplateRow.team_id == team_id, TemplateRow.name == name))).scalar_one_or_none()
    return found


async def remove(svc: CapsuleService, db: AsyncSession, team_id: str, name: str) -> None:
    """Delete the team's template `name`: its files on the host that holds them, then its record."""
    row = await team_template(db, team_id, name)
    if row is None:
        raise not_found(f"template {name!r} not found")
    client = svc.agents.get(row.host_id)
    try:
        await client.delete_template(team_id, name)
    except NotFound:
        pass  # files already gone: drop the record anyway
    except BadRequest as exc:  # e.g. another snapshot is layered on it
        raise conflict(f"cannot delete template {name!r}: {exc.message}") from exc
    except AgentError as exc:
        raise to_api_error(exc) from exc
    await db.execute(delete(TemplateRow).where(TemplateRow.id == row.id))
    await db.commit()
