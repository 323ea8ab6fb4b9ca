"""The host join flow of the contract: register, refresh, heartbeat, sandbox events.

Only what a host agent needs to join and report; the operator's hosts API (create, list, delete,
tags, BYOC) comes with the hosts issue.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Response
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.wire.api.hosts import (
    Host as HostOut,
)
from wrenn_platform.wire.api.hosts import (
    RefreshHostTokenRequest,
    RefreshHostTokenResponse,
    RegisterHostRequest,
    RegisterHostResponse,
    SandboxEventRequest,
)

from ..audit.actor import bind as bind_actor
from ..audit.actor import host_actor
from ..db.models import Capsule, Host
from ..db.types import utcnow
from ..deps import get_db, get_settings
from ..errors import forbidden, responses, unauthorized
from ..hosts import fleet
from ..hosts import service as hosts
from ..hosts.tokens import HostTokenError, verify_host_jwt
from ..settings import Settings

router = APIRouter(tags=["hosts"])

# What each autonomous event means for the capsule's record.
_EVENT_STATUS = {"sandbox.auto_paused": "paused", "sandbox.stopped": "stopped", "sandbox.error": "error"}


def host_out(host: Host) -> HostOut:
    return HostOut.model_validate(host, from_attributes=True)


async def require_host(x_host_token: str | None = Header(None), settings: Settings = Depends(get_settings),
                       db: AsyncSession = Depends(get_db)) -> Host:
    if not x_host_token:
        raise unauthorized("missing X-Host-Token")
    try:
        host_id = verify_host_jwt(settings, x_host_token)
    except HostTokenError as exc:
        raise unauthorized(f"invalid host token: {exc}") from exc
    host = await db.get(Host, host_id)
    if host is None:
        raise unauthorized("invalid host token: unknown host")
    bind_actor(host_actor(host.id))  # what the host's request changes is recorded as done by the host
    return host


@router.post("/v1/hosts/register", status_code=201, responses=responses(400, 401))
async def register_host(body: RegisterHostRequest, db: AsyncSession = Depends(get_db),
                        settings: Settings = Depends(get_settings)) -> RegisterHostResponse:
    host, token, refresh = await hosts.register(
        db, settings, body.token, address=body.address, arch=body.arch, cpu_cores=body.cpu_cores,
        memory_mb=body.memory_mb, disk_gb=body.disk_gb)
    return RegisterHostResponse(host=host_out(host), token=token, refresh_token=refresh)


@router.post("/v1/hosts/auth/refresh", responses=responses(401))
async def refresh_host_token(body: RefreshHostTokenRequest, db: AsyncSession = Depends(get_db),
                             settings: Settings = Depends(get_settings)) -> RefreshHostTokenResponse:
    host, token, refresh = await hosts.refresh(db, settings, body.refresh_token)
    return RefreshHostTokenResponse(host=host_out(host), token=token, refresh_token=refresh)


@router.post("/v1/hosts/{id}/heartbeat", status_code=204, responses=responses(401, 403))
async def host_heartbeat(id: str, host: Host = Depends(require_host), db: AsyncSession = Depends(get_db)) -> Response:
    if host.id != id:
        raise forbidden("host ID mismatch")
    await fleet.heartbeat(db, host.id)
    return Response(status_code=204)


@router.post("/v1/hosts/sandbox-events", status_code=204, responses=responses(400, 403))
async def sandbox_event(body: SandboxEventRequest, host: Host = Depends(require_host),
                        db: AsyncSession = Depends(get_db)) -> Response:
    if body.host_id != host.id:
        raise forbidden("host ID mismatch")
    status = _EVENT_STATUS.get(body.event)
    if status is None:
        return Response(status_code=204)  # unknown events are accepted (future-compatible)
    values: dict[str, object] = {"status": status, "last_updated": utcnow()}
    if status == "stopped":
        values["stopped_at"] = utcnow()
    # Only capsules of this host, and never resurrect a capsule the control plane already stopped.
    stmt = (update(Capsule).where(Capsule.id == body.sandbox_id, Capsule.host_id == host.id,
                                  Capsule.status != "stopped"))
    if status == "paused":
        stmt = stmt.where(Capsule.status == "running")
    await db.execute(stmt.values(**values))
    await db.commit()
    return Response(status_code=204)
