"""Operations inside a capsule — exec, processes, files, metrics, WebSocket channels — shared by the
tenant routes (`routes/capsules.py`) and the admin ones (`routes/admin_capsules.py`).

The route decides whose capsule it may be: the tenant passes the caller's principal, the admin one
scoped to the capsule's team (`admin_capsules.acting`); a WebSocket route passes its `authorize`.
Guest operations need the capsule `running` (else 409) and go to its host's agent.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Request, WebSocket
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.agent_link.client import AgentClient
from wrenn_platform.wire import agent as agent_wire
from wrenn_platform.wire.api.capsules import (
    BackgroundExecResponse,
    CapsuleMetrics,
    ExecRequest,
    ExecResponse,
    MetricsRange,
)

from ..auth.principal import Principal
from ..errors import ApiError, not_found
from . import states, ws
from .agents import agent_errors
from .multipart import read_upload, too_large
from .service import CapsuleService

Authorize = Callable[[WebSocket, str, str], Awaitable[AgentClient | None]]
# What the agent's exec result says beyond the contract's `ExecResponse`.
_AGENT_ONLY_EXEC_FIELDS = set(agent_wire.ExecResponse.model_fields) - set(ExecResponse.model_fields)


async def running_client(svc: CapsuleService, db: AsyncSession, principal: Principal, capsule_id: str,
                         doing: str) -> AgentClient:
    """The running capsule's agent, the database connection given back (if one was taken) while it answers.
    With the caller's key and the capsule in the in-memory caches, no transaction was begun: the hot path
    skips an empty commit (a greenlet round trip in SQLAlchemy's async session)."""
    client = await svc.running_client(db, principal, capsule_id, doing)
    if db.in_transaction():
        await db.commit()
    return client


async def metrics(svc: CapsuleService, db: AsyncSession, principal: Principal, capsule_id: str,
                  range: MetricsRange) -> CapsuleMetrics:
    capsule = await svc.owned(db, principal, capsule_id)
    if capsule.status in states.NO_METRICS:
        raise not_found(f"no metrics for capsule {capsule_id} ({capsule.status})")
    client = svc.agents.get(capsule.host_id)
    await db.commit()  # give the connection back while the agent answers
    with agent_errors():
        return await client.metrics(capsule_id, range)


# ---- exec and processes ---------------------------------------------------------------------------


async def exec_command(svc: CapsuleService, db: AsyncSession, principal: Principal, capsule_id: str,
                       body: ExecRequest) -> Response:
    """200 with the output, or 202 for a background process."""
    client = await running_client(svc, db, principal, capsule_id, "exec in")
    # The contract's request as the agent's (which adds the user); validated already (hot path).
    request = agent_wire.ExecRequest.model_construct(**dict(body))
    with agent_errors():
        result = await client.exec(capsule_id, request)
    # The agent answers in the contract's models: serialised once, directly (hot path).
    if isinstance(result, BackgroundExecResponse):
        return Response(result.model_dump_json(), status_code=202, media_type="application/json")
    return Response(result.model_dump_json(exclude=_AGENT_ONLY_EXEC_FIELDS), media_type="application/json")


async def call(svc: CapsuleService, db: AsyncSession, principal: Principal, capsule_id: str,
               op: agent_wire.GuestOp[agent_wire.Req, agent_wire.Resp], req: agent_wire.Req) -> agent_wire.Resp:
    """One of the unary guest operations (`wire.agent.GUEST_OPS`: processes, directories) in the
    running capsule, answered in the contract's model."""
    client = await running_client(svc, db, principal, capsule_id, op.doing)
    with agent_errors():
        return await client.guest(capsule_id, op, req)


# ---- files ----------------------------------------------------------------------------------------


async def upload(svc: CapsuleService, db: AsyncSession, principal: Principal, capsule_id: str, request: Request,
                 limit: int | None) -> None:
    """The multipart body streamed into the guest; past `limit` bytes, 413."""
    client = await running_client(svc, db, principal, capsule_id, "write files to")
    file = await read_upload(request, limit)
    try:
        with agent_errors():
            await client.write_file(capsule_id, file.path, file.chunks)
    except ApiError:
        if file.exceeded and file.limit is not None:
            raise too_large(file.limit) from None
        raise


async def download(svc: CapsuleService, db: AsyncSession, principal: Principal, capsule_id: str,
                   path: str) -> StreamingResponse:
    client = await running_client(svc, db, principal, capsule_id, "read files from")
    stack = contextlib.AsyncExitStack()
    with agent_errors():
        chunks = await stack.enter_async_context(client.read_file(capsule_id, path))

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await stack.aclose()

    return StreamingResponse(body(), media_type="application/octet-stream")


# ---- WebSockets: refused before the upgrade by `authorize` (it answers None), then relayed ----------


async def exec_stream(websocket: WebSocket, capsule_id: str, authorize: Authorize) -> None:
    client = await authorize(websocket, capsule_id, "stream exec in")
    if client is not None:
        async with client.exec_stream(capsule_id) as channel:
            await ws.relay(websocket, channel)


async def pty(websocket: WebSocket, capsule_id: str, authorize: Authorize) -> None:
    client = await authorize(websocket, capsule_id, "open a terminal in")
    if client is not None:
        async with client.pty(capsule_id) as channel:
            await ws.relay(websocket, channel, raw_input=True)


async def process_stream(websocket: WebSocket, capsule_id: str, selector: str, authorize: Authorize) -> None:
    client = await authorize(websocket, capsule_id, "stream a process of")
    if client is not None:
        async with client.process_stream(capsule_id, selector) as channel:
            await ws.relay(websocket, channel)
