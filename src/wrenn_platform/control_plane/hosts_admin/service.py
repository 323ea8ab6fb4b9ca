"""Hosts over the database: create with a registration token, regenerate it, delete, tags.

Registration tokens are single use, valid for one hour (the contract), and only their SHA-256 is
stored; issuing a new one voids the host's earlier unused ones. Deleting a host with capsules is a
409 naming them unless forced; forcing destroys them through the capsule service first.
"""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.wire.api.hosts_admin import CreateHostRequest

from ..auth.principal import Principal
from ..capsules import states
from ..capsules.service import CapsuleService
from ..db.models import Capsule, Host, HostTag
from ..db.types import utcnow
from ..errors import ApiError, conflict, not_found
from ..hosts.fleet import audit_host
from ..hosts.service import issue_registration_token
from . import access

# Capsules a host still holds (running, paused, hibernated on its disk, or on their way there).
HELD = states.ON_HOST | {"pending", "hibernated"}
# How long a forced delete waits for the destroys it started on a reachable host.
FORCE_DESTROY_WAIT_S = 60.0
_POLL_S = 0.05


async def create(db: AsyncSession, principal: Principal, req: CreateHostRequest) -> tuple[Host, str]:
    await access.require_create(db, principal, req.type, req.team_id)
    host = Host(type=req.type, team_id=req.team_id, provider=req.provider, availability_zone=req.availability_zone,
                status="pending", created_by=principal.user_id or "system")
    db.add(host)
    await db.flush()
    return host, await issue_registration_token(db, host)


async def regenerate_token(db: AsyncSession, principal: Principal, host_id: str) -> tuple[Host, str]:
    host = await access.visible_host(db, principal, host_id)
    access.require_manage(principal, host, access.OWNERS)
    if host.type == "byoc" and not principal.is_admin:
        await access.require_byoc_team(db, host.team_id or "")
    if host.status != "pending":
        raise conflict(f"host {host_id} is {host.status}, not pending: it has registered already")
    audit_host(db, host, "regenerate_token")
    return host, await issue_registration_token(db, host)


async def list_hosts(db: AsyncSession, principal: Principal) -> list[Host]:
    stmt = select(Host).order_by(Host.created_at, Host.id)
    if not principal.is_admin:
        if principal.role is None:
            return []
        stmt = stmt.where(Host.type == "byoc", Host.team_id == principal.team_id)
    return list((await db.execute(stmt)).scalars().all())


async def held_capsules(db: AsyncSession, host_id: str) -> list[str]:
    rows = await db.execute(select(Capsule.id).where(Capsule.host_id == host_id, Capsule.status.in_(HELD))
                            .order_by(Capsule.created_at, Capsule.id))
    return list(rows.scalars().all())


async def delete_preview(db: AsyncSession, principal: Principal, host_id: str) -> tuple[Host, list[str]]:
    host = await access.visible_host(db, principal, host_id)
    access.require_manage(principal, host)
    return host, await held_capsules(db, host_id)


async def delete_host(db: AsyncSession, principal: Principal, capsules: CapsuleService, host_id: str,
                      force: bool) -> None:
    host = await access.visible_host(db, principal, host_id)
    access.require_manage(principal, host)
    held = await held_capsules(db, host_id)
    if held and not force:
        raise ApiError(409, "host_has_sandboxes",
                       f"host {host_id} has {len(held)} active capsule(s): delete with ?force=true to destroy them",
                       extra={"sandbox_ids": held})
    if held:
        await _destroy_all(db, capsules, host_id, held)
    capsules.agents.remove(host_id)
    await db.execute(delete(Host).where(Host.id == host_id))
    await db.commit()


async def _destroy_all(db: AsyncSession, capsules: CapsuleService, host_id: str, held: list[str]) -> None:
    """Destroy through the capsule service (the agent, when reachable, removes them); what the host
    could not destroy before it is deleted is recorded stopped, as no host will report it again."""
    for capsule_id in held:
        capsule = await db.get(Capsule, capsule_id)
        if capsule is not None and capsule.status in states.DESTROYABLE:
            with contextlib.suppress(ApiError):  # its status moved on meanwhile: settled below
                await capsules.destroy(db, capsule)
    for _ in range(int(FORCE_DESTROY_WAIT_S / _POLL_S)):
        if not any(capsules.busy(c) for c in held):
            break
        await asyncio.sleep(_POLL_S)
    now = utcnow()
    for capsule_id in held:
        await capsules.write(capsule_id, {"status": "stopped", "stopped_at": now,
                                          "error": f"host {host_id} was deleted"}, only_if="stopping")
    db.expire_all()


# ---- tags -----------------------------------------------------------------------------------------


async def list_tags(db: AsyncSession, principal: Principal, host_id: str) -> list[str]:
    await access.visible_host(db, principal, host_id)
    rows = await db.execute(select(HostTag.tag).where(HostTag.host_id == host_id).order_by(HostTag.tag))
    return list(rows.scalars().all())


async def add_tag(db: AsyncSession, principal: Principal, host_id: str, tag: str) -> None:
    host = await access.visible_host(db, principal, host_id)
    access.require_manage(principal, host)
    if await db.get(HostTag, (host_id, tag)) is not None:
        return
    db.add(HostTag(host_id=host_id, tag=tag))
    audit_host(db, host, "add_tag", tag=tag)
    try:
        await db.commit()
    except IntegrityError:  # added concurrently: the tag is there, as asked
        await db.rollback()


async def remove_tag(db: AsyncSession, principal: Principal, host_id: str, tag: str) -> None:
    host = await access.visible_host(db, principal, host_id)
    access.require_manage(principal, host)
    result = await db.execute(delete(HostTag).where(HostTag.host_id == host_id, HostTag.tag == tag))
    if not result.rowcount:  # type: ignore[attr-defined]
        await db.rollback()
        raise not_found(f"host {host_id} has no tag {tag!r}")
    audit_host(db, host, "remove_tag", tag=tag)
    await db.commit()

