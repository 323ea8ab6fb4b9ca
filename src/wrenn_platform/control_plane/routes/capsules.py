"""`/v1/capsules*`: lifecycle, exec, processes, files, WebSockets, metrics, stats and usage.

Every route accepts `X-API-Key` or the session cookie (+ CSRF on writes); another team's capsule
is a 404 everywhere. Guest operations need the capsule `running` (else 409) and go to its host's
agent through `host_agent.client.AgentClient`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import date
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, WebSocket
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.host_agent.client import AgentClient
from wrenn_platform.wire import agent as agent_wire
from wrenn_platform.wire.api.capsules import (
    BackgroundExecResponse,
    Capsule,
    CapsuleMetrics,
    CapsuleStats,
    CreateCapsuleRequest,
    ExecRequest,
    ExecResponse,
    FileEntry,
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
from ..capsules import states, usage, ws
from ..capsules.agents import agent_errors
from ..capsules.lifespan import get_capsules
from ..capsules.multipart import read_upload, too_large
from ..capsules.service import CapsuleService, to_out
from ..deps import get_db, get_settings
from ..errors import ApiError, not_found, responses
from ..settings import Settings

router = APIRouter(tags=["capsules"])

Auth = Depends(require_key_or_session)
Db = Depends(get_db)
Svc = Depends(get_capsules)


async def _guest_client(svc: CapsuleService, db: AsyncSession, principal: Principal, capsule_id: str,
                        doing: str) -> AgentClient:
    """The running capsule's agent, the database connection given back (if one was taken) while it answers.
    With the caller's key and the capsule in the in-memory caches, no transaction was begun: the hot path
    skips an empty commit (a greenlet round trip in SQLAlchemy's async session)."""
    client = await svc.running_client(db, principal, capsule_id, doing)
    if db.in_transaction():
        await db.commit()
    return client


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


@router.delete("/v1/capsules/{id}", status_code=202, response_class=Response,
               responses={202: {"description": "Capsule destruction initiated"}})
async def destroy_capsule(id: str, principal: Principal = Auth, db: AsyncSession = Db,
                          svc: CapsuleService = Svc) -> Response:
    await svc.destroy(db, await svc.owned(db, principal, id))
    return Response(status_code=202)


@router.post("/v1/capsules/{id}/pause", status_code=202, responses=responses(409))
async def pause_capsule(id: str, principal: Principal = Auth, db: AsyncSession = Db,
                        svc: CapsuleService = Svc) -> Capsule:
    return to_out(await svc.pause(db, await svc.owned(db, principal, id)))


@router.post("/v1/capsules/{id}/resume", status_code=202, responses=responses(409))
async def resume_capsule(id: str, principal: Principal = Auth, db: AsyncSession = Db,
                         svc: CapsuleService = Svc) -> Capsule:
    return to_out(await svc.resume(db, await svc.owned(db, principal, id)))


@router.post("/v1/capsules/{id}/ping", status_code=204, responses=responses(404, 409))
async def ping_capsule(id: str, principal: Principal = Auth, db: AsyncSession = Db,
                       svc: CapsuleService = Svc) -> Response:
    await svc.ping(db, await svc.owned(db, principal, id))
    return Response(status_code=204)


@router.get("/v1/capsules/{id}/metrics", responses=responses(400, 404))
async def capsule_metrics(id: str, range: MetricsRange = Query("10m"), principal: Principal = Auth,
                          db: AsyncSession = Db, svc: CapsuleService = Svc) -> CapsuleMetrics:
    capsule = await svc.owned(db, principal, id)
    if capsule.status in states.NO_METRICS:
        raise not_found(f"no metrics for capsule {id} ({capsule.status})")
    client = svc.agents.get(capsule.host_id)
    await db.commit()  # give the connection back while the agent answers
    with agent_errors():
        result = await client.metrics(id, range)
    return CapsuleMetrics.model_validate(result.model_dump())


# ---- exec and processes ---------------------------------------------------------------------------


@router.post("/v1/capsules/{id}/exec", response_model=None, responses={
    **responses(404, 409),
    200: {"model": ExecResponse, "description": "Command output (foreground exec)"},
    202: {"model": BackgroundExecResponse, "description": "Background process started"},
})
async def exec_command(id: str, body: ExecRequest, principal: Principal = Auth, db: AsyncSession = Db,
                       svc: CapsuleService = Svc) -> Response:
    client = await _guest_client(svc, db, principal, id, "exec in")
    with agent_errors():
        result = await client.exec(id, agent_wire.ExecRequest(**body.model_dump()))
    # The agent's models are field for field the contract's: serialise them once, directly (hot path).
    if isinstance(result, agent_wire.BackgroundExecResponse):
        out = BackgroundExecResponse(sandbox_id=id, cmd=result.cmd, pid=result.pid, tag=result.tag)
        return Response(out.model_dump_json(), status_code=202, media_type="application/json")
    return Response(ExecResponse.model_construct(**dict(result)).model_dump_json(), media_type="application/json")


@router.get("/v1/capsules/{id}/processes", responses=responses(404, 409))
async def list_processes(id: str, principal: Principal = Auth, db: AsyncSession = Db,
                         svc: CapsuleService = Svc) -> ProcessListResponse:
    client = await _guest_client(svc, db, principal, id, "list processes of")
    with agent_errors():
        result = await client.list_processes(id)
    return ProcessListResponse.model_validate(result.model_dump())


@router.delete("/v1/capsules/{id}/processes/{selector}", status_code=204,
               responses=responses(404, 409))
async def kill_process(id: str, selector: str, signal: Literal["SIGKILL", "SIGTERM"] = Query("SIGKILL"),
                       principal: Principal = Auth, db: AsyncSession = Db,
                       svc: CapsuleService = Svc) -> Response:
    client = await _guest_client(svc, db, principal, id, "kill a process in")
    with agent_errors():
        await client.kill_process(id, selector, signal)
    return Response(status_code=204)


# ---- WebSockets -----------------------------------------------------------------------------------


@router.websocket("/v1/capsules/{id}/exec/stream")
async def exec_stream(websocket: WebSocket, id: str) -> None:
    client = await ws.authorize(websocket, id, "stream exec in")
    if client is not None:
        async with client.exec_stream(id) as channel:
            await ws.relay(websocket, channel)


@router.websocket("/v1/capsules/{id}/pty")
async def pty(websocket: WebSocket, id: str) -> None:
    client = await ws.authorize(websocket, id, "open a terminal in")
    if client is not None:
        async with client.pty(id) as channel:
            await ws.relay(websocket, channel)


@router.websocket("/v1/capsules/{id}/processes/{selector}/stream")
async def process_stream(websocket: WebSocket, id: str, selector: str) -> None:
    client = await ws.authorize(websocket, id, "stream a process of")
    if client is not None:
        async with client.process_stream(id, selector) as channel:
            await ws.relay(websocket, channel)


# ---- files ----------------------------------------------------------------------------------------


async def _upload(id: str, request: Request, limit: int | None, principal: Principal, db: AsyncSession,
                  svc: CapsuleService) -> Response:
    client = await _guest_client(svc, db, principal, id, "write files to")
    upload = await read_upload(request, limit)
    try:
        with agent_errors():
            await client.write_file(id, upload.path, upload.chunks)
    except ApiError:
        if upload.exceeded and upload.limit is not None:
            raise too_large(upload.limit) from None
        raise
    return Response(status_code=204)


async def _download(id: str, path: str, principal: Principal, db: AsyncSession,
                    svc: CapsuleService) -> StreamingResponse:
    client = await _guest_client(svc, db, principal, id, "read files from")
    stack = contextlib.AsyncExitStack()
    with agent_errors():
        chunks = await stack.enter_async_context(client.read_file(id, path))

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await stack.aclose()

    return StreamingResponse(body(), media_type="application/octet-stream")


_FILE_BODY = {"content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["path", "file"],
    "properties": {"path": {"type": "string"}, "file": {"type": "string", "format": "binary"}}}}}}
_BYTES = {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}


@router.post("/v1/capsules/{id}/files/write", status_code=204, responses=responses(409, 413),
             openapi_extra={"requestBody": {"required": True, **_FILE_BODY}})
async def write_file(id: str, request: Request, principal: Principal = Auth, db: AsyncSession = Db,
                     svc: CapsuleService = Svc, settings: Settings = Depends(get_settings)) -> Response:
    return await _upload(id, request, settings.max_upload_bytes, principal, db, svc)


@router.post("/v1/capsules/{id}/files/stream/write", status_code=204,
             responses=responses(404, 409),
             openapi_extra={"requestBody": {"required": True, **_FILE_BODY}})
async def stream_write_file(id: str, request: Request, principal: Principal = Auth, db: AsyncSession = Db,
                            svc: CapsuleService = Svc) -> Response:
    return await _upload(id, request, None, principal, db, svc)


@router.post("/v1/capsules/{id}/files/read", response_class=StreamingResponse,
             responses={**responses(404), 200: _BYTES})
async def read_file(id: str, body: ReadFileRequest, principal: Principal = Auth, db: AsyncSession = Db,
                    svc: CapsuleService = Svc) -> StreamingResponse:
    return await _download(id, body.path, principal, db, svc)


@router.post("/v1/capsules/{id}/files/stream/read", response_class=StreamingResponse,
             responses={**responses(404, 409), 200: _BYTES})
async def stream_read_file(id: str, body: ReadFileRequest, principal: Principal = Auth, db: AsyncSession = Db,
                           svc: CapsuleService = Svc) -> StreamingResponse:
    return await _download(id, body.path, principal, db, svc)


@router.post("/v1/capsules/{id}/files/list", responses=responses(404, 409))
async def list_dir(id: str, body: ListDirRequest, principal: Principal = Auth, db: AsyncSession = Db,
                   svc: CapsuleService = Svc) -> ListDirResponse:
    client = await _guest_client(svc, db, principal, id, "list files of")
    with agent_errors():
        result = await client.list_dir(id, body.path, body.depth)
    return ListDirResponse.model_validate(result.model_dump())


@router.post("/v1/capsules/{id}/files/mkdir", responses=responses(404, 409))
async def make_dir(id: str, body: MakeDirRequest, principal: Principal = Auth, db: AsyncSession = Db,
                   svc: CapsuleService = Svc) -> MakeDirResponse:
    client = await _guest_client(svc, db, principal, id, "create directories in")
    with agent_errors():
        entry = await client.make_dir(id, body.path)
    return MakeDirResponse(entry=FileEntry.model_validate(entry.model_dump()))


@router.post("/v1/capsules/{id}/files/remove", status_code=204, responses=responses(404, 409))
async def remove_path(id: str, body: RemoveRequest, principal: Principal = Auth, db: AsyncSession = Db,
                      svc: CapsuleService = Svc) -> Response:
    client = await _guest_client(svc, db, principal, id, "remove files in")
    with agent_errors():
        await client.remove(id, body.path)
    return Response(status_code=204)
