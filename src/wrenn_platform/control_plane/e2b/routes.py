"""E2B's REST API (the paths and shapes the `e2b` client 2.63 calls), over the capsule service.

Mounted by `routes/e2b.py`, out of the OpenAPI document (it is E2B's contract, not Wrenn's). The
caller is the team of its `X-API-KEY` (a Wrenn API key). Lifecycle calls answer once the sandbox
is in its new state, as E2B's do; errors are E2B's `{"code", "message"}` (`errors.py`).
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.wire.api.capsules import CreateCapsuleRequest

from ..audit.actor import bind as bind_actor
from ..auth.principal import Principal, _api_key_principal
from ..capsules import guest, snapshots
from ..capsules.lifespan import get_capsules
from ..capsules.service import CapsuleService, CreateOptions
from ..db.models import Capsule
from ..db.models import Template as TemplateRow
from ..deps import get_db, get_settings
from ..errors import ApiError, bad_request, unauthorized
from ..proxy.hostnames import proxy_domain
from ..settings import Settings
from . import lifetime, models
from .errors import E2bRoute
from .sandboxes import (
    DEFAULT_USER,
    created,
    detail,
    listed,
    metadata_filter,
    not_found,
    state,
    state_filter,
    template_name,
    visible,
)

router = APIRouter(route_class=E2bRoute, include_in_schema=False, tags=["e2b"])

_SETTLE_S = 300.0  # longest a lifecycle call waits for its outcome (a TCG microVM boot is slow)
_LIST_LIMIT = 100


async def e2b_principal(request: Request, db: AsyncSession = Depends(get_db)) -> Principal:
    principal = await _api_key_principal(request, db)
    if principal is None:
        raise unauthorized("missing X-API-KEY header")
    bind_actor(principal)
    return principal


Auth = Depends(e2b_principal)
Db = Depends(get_db)
Svc = Depends(get_capsules)


def sandbox_domain(settings: Settings) -> str:
    """Where the host form `{port}-{sandboxID}.{domain}` reaches this server (the port proxy)."""
    domain = proxy_domain(settings.proxy_domain, settings.public_url)
    port = urlsplit(settings.public_url).port if settings.public_url else settings.port
    return f"{domain}:{port}" if port else domain


# ---- lifecycle ------------------------------------------------------------------------------------


@router.post("/v2/sandboxes", status_code=201)
async def create_sandbox(body: models.NewSandbox, principal: Principal = Auth, db: AsyncSession = Db,
                         svc: CapsuleService = Svc,
                         settings: Settings = Depends(get_settings)) -> models.Sandbox:
    template = template_name(body.template_id)
    await _require_template(db, svc, principal, template, body.template_id)
    request = CreateCapsuleRequest(template=template, timeout_sec=0,
                                   metadata=body.metadata or None)
    options = CreateOptions(env_vars=dict(body.env_vars or {}), default_user=DEFAULT_USER,
                            ends_at=lifetime.end_after(body.timeout), on_end="pause" if body.auto_pause else "kill")
    capsule = await svc.create(db, principal, request, options)
    capsule = await lifetime.wait_settled(svc, capsule.id, _SETTLE_S)
    if capsule.status != "running":
        raise ApiError(500, "create_failed", f"sandbox {capsule.id} of template {body.template_id!r} failed to "
                       f"start: {capsule.error or capsule.status}")
    return created(svc, capsule, sandbox_domain(settings))


async def _require_template(db: AsyncSession, svc: CapsuleService, principal: Principal, name: str,
                            asked: str) -> None:
    """404 now for a template neither the platform nor the caller's team has (not a failed sandbox)."""
    team = await db.execute(select(TemplateRow.id).where(TemplateRow.team_id == principal.team_id,
                                                         TemplateRow.name == name))
    if team.first() is None and name not in {t.name for t in await snapshots.platform_templates(svc)}:
        raise ApiError(404, "not_found", f"template {asked!r} not found")


@router.post("/v2/sandboxes/{sandbox_id}/connect", status_code=200)
async def connect_sandbox(sandbox_id: str, body: models.ConnectSandbox, response: Response,
                          principal: Principal = Auth, db: AsyncSession = Db, svc: CapsuleService = Svc,
                          settings: Settings = Depends(get_settings)) -> models.Sandbox:
    """A running sandbox keeps its end unless `timeout` moves it later; a paused one is resumed
    (201) and lives `timeout` seconds (E2B's default when absent)."""
    await visible(db, principal, sandbox_id)
    capsule = await _settled(db, svc, sandbox_id)
    if capsule.status == "paused":
        await svc.resume(db, capsule)
        capsule = await lifetime.wait_settled(svc, sandbox_id, _SETTLE_S)
        if capsule.status != "running":
            raise ApiError(500, "resume_failed", f"sandbox {sandbox_id} could not be resumed: "
                           f"{capsule.error or capsule.status}")
        await _set_end(db, sandbox_id, lifetime.end_after(body.timeout or models.DEFAULT_TIMEOUT_S))
        response.status_code = 201
    elif capsule.status == "running":
        if body.timeout is not None:
            later = lifetime.end_after(body.timeout)
            if capsule.ends_at is None or capsule.ends_at < later:
                await _set_end(db, sandbox_id, later)
    else:
        raise not_found(sandbox_id)
    return created(svc, capsule, sandbox_domain(settings))


@router.get("/sandboxes/{sandbox_id}")
async def get_sandbox(sandbox_id: str, principal: Principal = Auth, db: AsyncSession = Db,
                      svc: CapsuleService = Svc, settings: Settings = Depends(get_settings)) -> models.SandboxDetail:
    return detail(svc, await visible(db, principal, sandbox_id), sandbox_domain(settings))


@router.get("/v2/sandboxes")
async def list_sandboxes(response: Response, metadata: str | None = None,
                         state_: list[str] | None = Query(None, alias="state"),
                         limit: int = Query(_LIST_LIMIT, ge=1, le=_LIST_LIMIT),
                         next_token: str | None = Query(None, alias="nextToken"),
                         order: str = Query("desc", pattern="^(asc|desc)$"),
                         template: str | None = None,
                         started_after: datetime | None = Query(None, alias="startedAfter"),
                         principal: Principal = Auth, db: AsyncSession = Db) -> list[models.ListedSandbox]:
    wanted_meta = metadata_filter(metadata)
    wanted_states = state_filter(state_)
    offset = _offset(next_token)
    created_at = Capsule.created_at.asc() if order == "asc" else Capsule.created_at.desc()
    query = select(Capsule).where(Capsule.team_id == principal.team_id)
    if template:
        query = query.where(Capsule.template == template_name(template))
    if started_after is not None:
        if started_after.tzinfo is None:
            started_after = started_after.replace(tzinfo=UTC)
        query = query.where(Capsule.created_at >= started_after)
    rows = await db.execute(query.order_by(created_at, Capsule.id))
    matching = [c for c in rows.scalars().all()
                if state(c) in wanted_states and all((c.labels or {}).get(k) == v for k, v in wanted_meta.items())]
    page = matching[offset:offset + limit]
    if offset + limit < len(matching):
        response.headers["x-next-token"] = base64.urlsafe_b64encode(str(offset + limit).encode()).decode()
    return [listed(c) for c in page]


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_request(f"invalid nextToken {token!r}") from None


@router.delete("/sandboxes/{sandbox_id}", status_code=204)
async def kill_sandbox(sandbox_id: str, principal: Principal = Auth, db: AsyncSession = Db,
                       svc: CapsuleService = Svc) -> Response:
    await svc.destroy(db, await visible(db, principal, sandbox_id))
    await lifetime.wait_settled(svc, sandbox_id, _SETTLE_S)
    return Response(status_code=204)


@router.post("/sandboxes/{sandbox_id}/timeout", status_code=204)
async def set_timeout(sandbox_id: str, body: models.TimeoutRequest, principal: Principal = Auth,
                      db: AsyncSession = Db) -> Response:
    """E2B's semantics: the sandbox now ends `timeout` seconds from now, earlier or later than before."""
    await visible(db, principal, sandbox_id)
    await _set_end(db, sandbox_id, lifetime.end_after(body.timeout))
    return Response(status_code=204)


@router.post("/sandboxes/{sandbox_id}/pause", status_code=204)
async def pause_sandbox(sandbox_id: str, principal: Principal = Auth, db: AsyncSession = Db,
                        svc: CapsuleService = Svc) -> Response:
    await visible(db, principal, sandbox_id)
    capsule = await _settled(db, svc, sandbox_id)
    if capsule.status == "paused":
        raise ApiError(409, "conflict", f"sandbox {sandbox_id} is already paused")
    if capsule.status != "running":
        raise not_found(sandbox_id)
    await svc.pause(db, capsule)
    capsule = await lifetime.wait_settled(svc, sandbox_id, _SETTLE_S)
    if capsule.status != "paused":
        raise ApiError(500, "pause_failed", f"sandbox {sandbox_id} could not be paused: "
                       f"{capsule.error or capsule.status}")
    await _set_end(db, sandbox_id, None)
    return Response(status_code=204)


async def _settled(db: AsyncSession, svc: CapsuleService, sandbox_id: str) -> Capsule:
    """The record once settled, loaded into the request's session (the service's calls need it there)."""
    await lifetime.wait_settled(svc, sandbox_id, _SETTLE_S)
    capsule = await db.get(Capsule, sandbox_id, populate_existing=True)
    if capsule is None:
        raise not_found(sandbox_id)
    return capsule


async def _set_end(db: AsyncSession, sandbox_id: str, ends_at: datetime | None) -> None:
    await db.execute(update(Capsule).where(Capsule.id == sandbox_id).values(ends_at=ends_at))
    await db.commit()


# ---- metrics --------------------------------------------------------------------------------------


@router.get("/sandboxes/{sandbox_id}/metrics")
async def sandbox_metrics(sandbox_id: str, start: int | None = None, end: int | None = None,
                          principal: Principal = Auth, db: AsyncSession = Db,
                          svc: CapsuleService = Svc) -> list[models.SandboxMetric]:
    """The agent's samples of the last 24 h between `start` and `end` (Unix seconds)."""
    capsule = await visible(db, principal, sandbox_id)
    vcpus, mem_total, disk_total = capsule.vcpus, capsule.memory_mb << 20, capsule.disk_size_mb << 20
    points = (await guest.metrics(svc, db, principal, sandbox_id, "24h")).points
    return [
        models.SandboxMetric(
            timestamp=datetime.fromtimestamp(p.timestamp_unix, UTC), timestamp_unix=p.timestamp_unix,
            cpu_count=vcpus, cpu_used_pct=p.cpu_pct, mem_used=p.mem_bytes, mem_total=mem_total, mem_cache=0,
            disk_used=p.disk_bytes, disk_total=disk_total)
        for p in points
        if (start is None or p.timestamp_unix >= start) and (end is None or p.timestamp_unix <= end)
    ]


# ---- snapshots ------------------------------------------------------------------------------------


@router.post("/sandboxes/{sandbox_id}/snapshots", status_code=201)
async def create_snapshot(sandbox_id: str, body: models.SnapshotRequest, principal: Principal = Auth,
                          db: AsyncSession = Db, svc: CapsuleService = Svc) -> models.SnapshotInfo:
    """A snapshot is a template of the caller's team: `Sandbox.create(snapshot_id)` starts from it."""
    await visible(db, principal, sandbox_id)
    template = await snapshots.take(svc, db, principal, sandbox_id, body.name)
    return models.SnapshotInfo(snapshot_id=template.name, names=[template.name])


@router.get("/snapshots")
async def list_snapshots(response: Response, sandbox_id: str | None = Query(None, alias="sandboxID"),
                         name: str | None = None, limit: int = Query(_LIST_LIMIT, ge=1, le=_LIST_LIMIT),
                         next_token: str | None = Query(None, alias="nextToken"),
                         principal: Principal = Auth, db: AsyncSession = Db) -> list[models.SnapshotInfo]:
    query = select(TemplateRow).where(TemplateRow.team_id == principal.team_id, TemplateRow.type == "snapshot")
    if sandbox_id:
        query = query.where(TemplateRow.source_capsule_id == sandbox_id)
    if name:
        query = query.where(TemplateRow.name == name)
    rows = list((await db.execute(query.order_by(TemplateRow.created_at.desc(), TemplateRow.id))).scalars().all())
    offset = _offset(next_token)
    if offset + limit < len(rows):
        response.headers["x-next-token"] = base64.urlsafe_b64encode(str(offset + limit).encode()).decode()
    return [models.SnapshotInfo(snapshot_id=r.name, names=[r.name]) for r in rows[offset:offset + limit]]


@router.delete("/templates/{template_id}", status_code=204)
async def delete_template(template_id: str, principal: Principal = Auth, db: AsyncSession = Db,
                          svc: CapsuleService = Svc) -> Response:
    await snapshots.remove(svc, db, principal.team_id, template_id)
    return Response(status_code=204)
