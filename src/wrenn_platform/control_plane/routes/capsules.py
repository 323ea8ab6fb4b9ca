"""`/v1/capsules*`: lifecycle, exec, processes, files, WebSockets, metrics, stats and usage.

Every route accepts `X-API-Key` or the session cookie (+ CSRF on writes); another team's capsule
is a 404 everywhere. Guest operations (exec, processes, files, metrics, WebSockets) are
`capsules/guest.py`, shared with the admin routes; they need the capsule `running` (else 409).
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, WebSocket
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.wire.agent import KILL_PROCESS, LIST_DIR, LIST_PROCESSES, MAKE_DIR, REMOVE, Empty, KillRequest
from wrenn_platform.wire.api.capsules import (
    Capsule,
    CapsuleMetrics,
    CapsuleStats,
    CreateCapsuleRequest,
    ExecRequest,
    ListDirRequest,
    ListDirResponse,
    MakeDirRequest,
    MakeDirResponse,
    MetricsRange,
    ProcessListResponse,
    ReadFileRequest,
    RemoveRequest,
    StatsRange,
    UsageResponse,
)

from ..auth.principal import Principal, require_key_or_session
from ..capsules import guest, usage, ws
from ..capsules.lifespan import get_capsules
from ..capsules.service import CapsuleService, to_out
from ..deps import get_db, get_settings
from ..errors import responses
from ..settings import Settings
from .capsules_openapi import BYTES, EXEC_RESPONSES, FILE_BODY

router = APIRouter(tags=["capsules"])

Auth = Depends(require_key_or_session)
Db = Depends(get_db)
Svc = Depends(get_capsules)


# ---- lifecycle ------------------------------------------------------------------------------------


@router.post("/v1/capsules", status_code=202, responses=responses(502))
async def create_capsule(body: CreateCapsuleRequest, principal: Principal = Auth, db: AsyncSession = Db,
                         svc: CapsuleService = Svc) -> Capsule:
    return to_out(await svc.create(db, principal, body))


@router.get("/v1/capsules")
async def list_capsules(principal: Principal = Auth, db: AsyncSession = Db,
                        svc: CapsuleService = Svc) -> list[Capsule]:
    return [to_out(c) for c in await svc.list(db, principal)]


@router.get("/v1/capsules/stats", responses=responses(400))
async def capsule_stats(range: StatsRange = Query("1h"), principal: Principal = Auth,
                        db: AsyncSession = Db) -> CapsuleStats:
    return await usage.stats(db, principal.team_id, range)


@router.get("/v1/capsules/usage", responses=responses(400), response_model=UsageResponse,
            response_model_by_alias=True)
async def capsule_usage(from_: date | None = Query(None, alias="from"), to: date | None = Query(None),
                        principal: Principal = Auth, db: AsyncSession = Db) -> UsageResponse:
    return await usage.daily_usage(db, principal.team_id, from_, to)


@router.get("/v1/capsules/{id}", responses=responses(404))
async def get_capsule(id: str, principal: Principal = Auth, db: AsyncSession = Db,
                      svc: CapsuleService = Svc) -> Capsule:
    return to_out(await svc.owned(db, principal, id))


# Pause, resume and destroy answer 202 once the operation settled or `lifecycle_settle_seconds` passed,
# with the capsule as it is then (settled, or still in the transient status).


# The contract documents destroy's 202 without a body; it carries the capsule all the same, which
# clients that parse every answer as JSON need (the served OpenAPI document keeps the contract's).
@router.delete("/v1/capsules/{id}", status_code=202, response_class=Response,
               responses={202: {"description": "Capsule destruction initiated"}})
async def destroy_capsule(id: str, principal: Principal = Auth, db: AsyncSession = Db,
                          svc: CapsuleService = Svc) -> Response:
    capsule = await svc.settled(db, await svc.destroy(db, await svc.owned(db, principal, id)))
    return Response(to_out(capsule).model_dump_json(), status_code=202, media_type="application/json")


@router.post("/v1/capsules/{id}/pause", status_code=202, responses=responses(409))
async def pause_capsule(id: str, principal: Principal = Auth, db: AsyncSession = Db,
                        svc: CapsuleService = Svc) -> Capsule:
    return to_out(await svc.settled(db, await svc.pause(db, await svc.owned(db, principal, id))))


@router.post("/v1/capsules/{id}/resume", status_code=202, responses=responses(409))
async def resume_capsule(id: str, principal: Principal = Auth, db: AsyncSession = Db,
                         svc: CapsuleService = Svc) -> Capsule:
    return to_out(await svc.settled(db, await svc.resume(db, await svc.owned(db, principal, id))))


@router.post("/v1/capsules/{id}/ping", status_code=204, responses=responses(404, 409))
async def ping_capsule(id: str, principal: Principal = Auth, db: AsyncSession = Db,
                       svc: CapsuleService = Svc) -> Response:
    await svc.ping(db, await svc.owned(db, principal, id))
    return Response(status_code=204)


@router.get("/v1/capsules/{id}/metrics", responses=responses(400, 404))
async def capsule_metrics(id: str, range: MetricsRange = Query("10m"), principal: Principal = Auth,
                          db: AsyncSession = Db, svc: CapsuleService = Svc) -> CapsuleMetrics:
    return await guest.metrics(svc, db, principal, id, range)


# ---- exec and processes ---------------------------------------------------------------------------


@router.post("/v1/capsules/{id}/exec", response_model=None, responses=EXEC_RESPONSES)
async def exec_command(id: str, body: ExecRequest, principal: Principal = Auth, db: AsyncSession = Db,
                       svc: CapsuleService = Svc) -> Response:
    return await guest.exec_command(svc, db, principal, id, body)


@router.get("/v1/capsules/{id}/processes", responses=responses(404, 409))
async def list_processes(id: str, principal: Principal = Auth, db: AsyncSession = Db,
                         svc: CapsuleService = Svc) -> ProcessListResponse:
    return await guest.call(svc, db, principal, id, LIST_PROCESSES, Empty())


@router.delete("/v1/capsules/{id}/processes/{selector}", status_code=204,
               responses=responses(404, 409))
async def kill_process(id: str, selector: str, signal: Literal["SIGKILL", "SIGTERM"] = Query("SIGKILL"),
                       principal: Principal = Auth, db: AsyncSession = Db,
                       svc: CapsuleService = Svc) -> Response:
    await guest.call(svc, db, principal, id, KILL_PROCESS, KillRequest(selector=selector, signal=signal))
    return Response(status_code=204)


# ---- WebSockets -----------------------------------------------------------------------------------


@router.websocket("/v1/capsules/{id}/exec/stream")
async def exec_stream(websocket: WebSocket, id: str) -> None:
    await guest.exec_stream(websocket, id, ws.authorize)


@router.websocket("/v1/capsules/{id}/pty")
async def pty(websocket: WebSocket, id: str) -> None:
    await guest.pty(websocket, id, ws.authorize)


@router.websocket("/v1/capsules/{id}/processes/{selector}/stream")
async def process_stream(websocket: WebSocket, id: str, selector: str) -> None:
    await guest.process_stream(websocket, id, selector, ws.authorize)


# ---- files ----------------------------------------------------------------------------------------


@router.post("/v1/capsules/{id}/files/write", status_code=204, responses=responses(409, 413),
             openapi_extra={"requestBody": {"required": True, **FILE_BODY}})
async def write_file(id: str, request: Request, principal: Principal = Auth, db: AsyncSession = Db,
                     svc: CapsuleService = Svc, settings: Settings = Depends(get_settings)) -> Response:
    await guest.upload(svc, db, principal, id, request, settings.max_upload_bytes)
    return Response(status_code=204)


@router.post("/v1/capsules/{id}/files/stream/write", status_code=204,
             responses=responses(404, 409),
             openapi_extra={"requestBody": {"required": True, **FILE_BODY}})
async def stream_write_file(id: str, request: Request, principal: Principal = Auth, db: AsyncSession = Db,
                            svc: CapsuleService = Svc) -> Response:
    await guest.upload(svc, db, principal, id, request, None)
    return Response(status_code=204)


@router.post("/v1/capsules/{id}/files/read", response_class=StreamingResponse,
             responses={**responses(404), 200: BYTES})
async def read_file(id: str, body: ReadFileRequest, principal: Principal = Auth, db: AsyncSession = Db,
                    svc: CapsuleService = Svc) -> StreamingResponse:
    return await guest.download(svc, db, principal, id, body.path)


@router.post("/v1/capsules/{id}/files/stream/read", response_class=StreamingResponse,
             responses={**responses(404, 409), 200: BYTES})
async def stream_read_file(id: str, body: ReadFileRequest, principal: Principal = Auth, db: AsyncSession = Db,
                           svc: CapsuleService = Svc) -> StreamingResponse:
    return await guest.download(svc, db, principal, id, body.path)


@router.post("/v1/capsules/{id}/files/list", responses=responses(404, 409))
async def list_dir(id: str, body: ListDirRequest, principal: Principal = Auth, db: AsyncSession = Db,
                   svc: CapsuleService = Svc) -> ListDirResponse:
    return await guest.call(svc, db, principal, id, LIST_DIR, body)


@router.post("/v1/capsules/{id}/files/mkdir", responses=responses(404, 409))
async def make_dir(id: str, body: MakeDirRequest, principal: Principal = Auth, db: AsyncSession = Db,
                   svc: CapsuleService = Svc) -> MakeDirResponse:
    return await guest.call(svc, db, principal, id, MAKE_DIR, body)


@router.post("/v1/capsules/{id}/files/remove", status_code=204, responses=responses(404, 409))
async def remove_path(id: str, body: RemoveRequest, principal: Principal = Auth, db: AsyncSession = Db,
                      svc: CapsuleService = Svc) -> Response:
    await guest.call(svc, db, principal, id, REMOVE, body)
    return Response(status_code=204)
