"""`/v1/admin/capsules*`: the tenant capsule operations on any team's capsule, for platform admins.

An admin acts *as the capsule's team*: the route resolves the capsule in any team, scopes the admin's
principal to its team (`as_team`), and calls with it the very service functions the tenant routes
call (`capsules/guest.py`, `capsules/snapshots.py`, `CapsuleService`; WebSockets: `ws.authorize`),
so both surfaces behave alike. Events and audit entries still name the admin, who is the bound actor.
Non-admins get 403 everywhere.

Where the contract's admin status differs from the tenant one (create 201, destroy 204), the route
waits for the lifecycle task to finish, bounded, and answers with the settled record.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, WebSocket
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request as HttpRequest

from wrenn_platform.agent_link.client import AgentClient
from wrenn_platform.wire.agent import KILL_PROCESS, LIST_DIR, LIST_PROCESSES, MAKE_DIR, REMOVE, Empty, KillRequest
from wrenn_platform.wire.api.admin_capsules import AdminCreateCapsuleRequest, AdminSnapshotRequest
from wrenn_platform.wire.api.capsules import (
    Capsule,
    CapsuleMetrics,
    CreateSnapshotRequest,
    ExecRequest,
    ListDirRequest,
    ListDirResponse,
    MakeDirRequest,
    MakeDirResponse,
    MetricsRange,
    ProcessListResponse,
    ReadFileRequest,
    RemoveRequest,
    Template,
)

from ..auth.principal import Principal, require_admin, require_session
from ..capsules import guest, snapshots, ws
from ..capsules.lifespan import get_capsules
from ..capsules.service import CapsuleService, to_out
from ..db.models import Capsule as CapsuleRow
from ..db.models import Team
from ..deps import get_db, get_settings
from ..errors import bad_request, not_found, responses
from ..settings import Settings
from .capsules_openapi import BYTES, EXEC_RESPONSES, FILE_BODY

router = APIRouter(prefix="/v1/admin/capsules", tags=["admin"])

Admin = Depends(require_admin)
Db = Depends(get_db)
Svc = Depends(get_capsules)
SETTLE_TIMEOUT_S = 120.0
_POLL_S = 0.02


def as_team(admin: Principal, team_id: str) -> Principal:
    """The admin's principal acting for `team_id` (the tenant handlers scope everything by it)."""
    return dataclasses.replace(admin, team_id=team_id, role=None)


async def capsule_team(db: AsyncSession, capsule_id: str) -> str:
    capsule = await db.get(CapsuleRow, capsule_id)
    if capsule is None:
        raise not_found(f"capsule {capsule_id} not found")
    return capsule.team_id


async def acting(id: str, admin: Principal = Admin, db: AsyncSession = Db) -> Principal:
    """Dependency: the admin, scoped to the team of capsule `id` (404 if there is none)."""
    return as_team(admin, await capsule_team(db, id))


Acting = Depends(acting)


async def settled(db: AsyncSession, svc: CapsuleService, capsule: CapsuleRow) -> CapsuleRow:
    """The record once this process's lifecycle task for it has finished (or the wait ran out)."""
    for _ in range(int(SETTLE_TIMEOUT_S / _POLL_S)):
        if not svc.busy(capsule.id):
            break
        await asyncio.sleep(_POLL_S)
    await db.refresh(capsule)
    return capsule


# ---- lifecycle ------------------------------------------------------------------------------------


@router.post("", status_code=201, operation_id="adminCreateCapsule")
async def create_capsule(body: AdminCreateCapsuleRequest, admin: Principal = Admin, db: AsyncSession = Db,
                         svc: CapsuleService = Svc) -> Capsule:
    team_id = body.team_id or admin.team_id
    team = await db.get(Team, team_id)
    if team is None or team.deleted_at is not None:
        raise bad_request(f"team_id: team {team_id} not found")
    capsule = await svc.create(db, as_team(admin, team_id), body)
    return to_out(await settled(db, svc, capsule))


@router.get("", operation_id="adminListCapsules")
async def list_capsules(_: Principal = Admin, db: AsyncSession = Db) -> list[Capsule]:
    rows = await db.execute(select(CapsuleRow).order_by(CapsuleRow.created_at.desc(), CapsuleRow.id))
    return [to_out(c) for c in rows.scalars().all()]


@router.get("/{id}", operation_id="adminGetCapsule")
async def get_capsule(id: str, principal: Principal = Acting, db: AsyncSession = Db,
                      svc: CapsuleService = Svc) -> Capsule:
    return to_out(await svc.owned(db, principal, id))


@router.delete("/{id}", status_code=204, response_class=Response, operation_id="adminDestroyCapsule")
async def destroy_capsule(id: str, principal: Principal = Acting, db: AsyncSession = Db,
                          svc: CapsuleService = Svc) -> Response:
    capsule = await svc.owned(db, principal, id)
    if capsule.status not in ("stopped", "stopping"):
        await svc.destroy(db, capsule)
    await settled(db, svc, capsule)
    return Response(status_code=204)


@router.post("/{id}/snapshot", status_code=201, operation_id="adminCreateSnapshotFromCapsule")
async def snapshot_capsule(id: str, body: AdminSnapshotRequest, principal: Principal = Acting,
                           db: AsyncSession = Db, svc: CapsuleService = Svc) -> Template:
    # The tenant's name rule (pattern, 63 characters), which the admin request model does not carry.
    try:
        name = CreateSnapshotRequest(sandbox_id=id, name=body.name).name
    except ValidationError as exc:
        raise bad_request(f"name: {exc.errors()[0]['msg']}") from None
    return await snapshots.take(svc, db, principal, id, name)


@router.get("/{id}/metrics", responses=responses(404), operation_id="adminGetCapsuleMetrics")
async def capsule_metrics(id: str, range: MetricsRange = Query("10m"), principal: Principal = Acting,
                          db: AsyncSession = Db, svc: CapsuleService = Svc) -> CapsuleMetrics:
    return await guest.metrics(svc, db, principal, id, range)


# ---- exec and processes ---------------------------------------------------------------------------


@router.post("/{id}/exec", response_model=None, operation_id="adminExecCommand", responses=EXEC_RESPONSES)
async def exec_command(id: str, body: ExecRequest, principal: Principal = Acting, db: AsyncSession = Db,
                       svc: CapsuleService = Svc) -> Response:
    return await guest.exec_command(svc, db, principal, id, body)


@router.get("/{id}/processes", responses=responses(404, 409), operation_id="adminListProcesses")
async def list_processes(id: str, principal: Principal = Acting, db: AsyncSession = Db,
                         svc: CapsuleService = Svc) -> ProcessListResponse:
    return await guest.call(svc, db, principal, id, LIST_PROCESSES, Empty())


@router.delete("/{id}/processes/{selector}", status_code=204, responses=responses(404, 409),
               operation_id="adminKillProcess")
async def kill_process(id: str, selector: str, signal: Literal["SIGKILL", "SIGTERM"] = Query("SIGKILL"),
                       principal: Principal = Acting, db: AsyncSession = Db,
                       svc: CapsuleService = Svc) -> Response:
    await guest.call(svc, db, principal, id, KILL_PROCESS, KillRequest(selector=selector, signal=signal))
    return Response(status_code=204)


# ---- files ----------------------------------------------------------------------------------------


@router.post("/{id}/files/write", status_code=204, responses=responses(409), operation_id="adminUploadFile",
             openapi_extra={"requestBody": {"required": True, **FILE_BODY}})
async def write_file(id: str, request: Request, principal: Principal = Acting, db: AsyncSession = Db,
                     svc: CapsuleService = Svc, settings: Settings = Depends(get_settings)) -> Response:
    await guest.upload(svc, db, principal, id, request, settings.max_upload_bytes)
    return Response(status_code=204)


@router.post("/{id}/files/read", response_class=StreamingResponse, operation_id="adminDownloadFile",
             responses={**responses(404), 200: BYTES})
async def read_file(id: str, body: ReadFileRequest, principal: Principal = Acting, db: AsyncSession = Db,
                    svc: CapsuleService = Svc) -> StreamingResponse:
    return await guest.download(svc, db, principal, id, body.path)


@router.post("/{id}/files/list", responses=responses(404, 409), operation_id="adminListDir")
async def list_dir(id: str, body: ListDirRequest, principal: Principal = Acting, db: AsyncSession = Db,
                   svc: CapsuleService = Svc) -> ListDirResponse:
    return await guest.call(svc, db, principal, id, LIST_DIR, body)


@router.post("/{id}/files/mkdir", responses=responses(404, 409), operation_id="adminMakeDir")
async def make_dir(id: str, body: MakeDirRequest, principal: Principal = Acting, db: AsyncSession = Db,
                   svc: CapsuleService = Svc) -> MakeDirResponse:
    return await guest.call(svc, db, principal, id, MAKE_DIR, body)


@router.post("/{id}/files/remove", status_code=204, responses=responses(404, 409), operation_id="adminRemovePath")
async def remove_path(id: str, body: RemoveRequest, principal: Principal = Acting, db: AsyncSession = Db,
                      svc: CapsuleService = Svc) -> Response:
    await guest.call(svc, db, principal, id, REMOVE, body)
    return Response(status_code=204)


# ---- WebSockets -----------------------------------------------------------------------------------


async def admin_principal(request: HttpRequest, db: AsyncSession, capsule_id: str) -> Principal:
    """`ws.Resolve` for admins: session + admin, scoped to the team of the capsule (any team's)."""
    admin = await require_admin(await require_session(request, db, request.app.state.settings))
    return as_team(admin, await capsule_team(db, capsule_id))


async def authorize(websocket: WebSocket, capsule_id: str, doing: str) -> AgentClient | None:
    return await ws.authorize(websocket, capsule_id, doing, admin_principal)


@router.websocket("/{id}/exec/stream")
async def exec_stream(websocket: WebSocket, id: str) -> None:
    await guest.exec_stream(websocket, id, authorize)


@router.websocket("/{id}/pty")
async def pty(websocket: WebSocket, id: str) -> None:
    await guest.pty(websocket, id, authorize)


@router.websocket("/{id}/processes/{selector}/stream")
async def process_stream(websocket: WebSocket, id: str, selector: str) -> None:
    await guest.process_stream(websocket, id, selector, authorize)
