"""The host agent's internal HTTP + WebSocket API, for the control plane only.

Authentication (see `agent_link.auth` for the token format):

- every request — HTTP and WebSocket handshakes alike, every path — must carry
  `Authorization: Bearer <JWT>` signed HS256 with the host's secret, `iss=wrenn-control-plane`,
  `aud=wrenn-agent`, `sub=<host id>`, valid for at most a minute. Anything else gets 401 (a
  WebSocket handshake gets an HTTP 401 denial, not an upgrade). The check is an ASGI middleware in
  front of the whole app, so no route can forget it.
- what the agent sends back on its own (autonomous events on `/v1/events`) is signed the other way
  (`iss=wrenn-agent`, `aud=wrenn-control-plane`), so the control plane can verify it too.

Tenants never reach this port: it listens on an address the operator configures (loopback or a
management network), and capsule network slots cannot reach host ports at all (the slot nftables
rules reject slot → host).

Routes (JSON bodies are the models in `wrenn_platform.wire.agent`; errors `{"error": {code, message}}`):

    GET    /v1/info
    GET    /v1/capsules                         POST /v1/capsules
    GET    /v1/capsules/{id}                    DELETE /v1/capsules/{id}
    POST   /v1/capsules/{id}/pause | /resume | /ping | /snapshot
    POST   /v1/capsules/{id}/exec               (foreground 200 ExecResponse, background 202)
    POST   /v1/capsules/{id}/guest/{operation}  (the unary guest operations, `wire.agent.GUEST_OPS`)
    WS     /v1/capsules/{id}/processes/{selector}/stream
    WS     /v1/capsules/{id}/exec/stream        WS /v1/capsules/{id}/pty
    PUT    /v1/capsules/{id}/files?path=        (raw body, streamed)
    GET    /v1/capsules/{id}/files?path=        (raw bytes, streamed)
    GET    /v1/capsules/{id}/metrics?range=
    POST   /v1/warm-pool/claim                  (201 CapsuleInfo, 204 when no warm capsule is ready)
    POST   /v1/warm-pool/drain
    GET    /v1/templates?team_id=               DELETE /v1/templates/{team_id}/{name}
    WS     /v1/events?after=<seq>               (server → client: {"type": "event", "token": <JWT>})
    WS     /v1/capsules/{id}/ports/{port}/tunnel  (binary: a TCP connection to the port, see `ports.py`)

WebSocket message tables are the public contract's, so the control plane relays them as they are.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from wrenn_platform.agent_link.auth import HostKey, TokenError
from wrenn_platform.host_agent import channels, ports
from wrenn_platform.host_agent.service import HostAgent
from wrenn_platform.wire.agent import (
    GUEST_OPS,
    AgentError,
    AgentInfo,
    BackgroundExecResponse,
    BadRequest,
    CapsuleInfo,
    CapsuleMetrics,
    CreateCapsuleRequest,
    DrainWarmPoolRequest,
    DrainWarmPoolResponse,
    ExecRequest,
    ExecResponse,
    NotFound,
    SnapshotRequest,
    TemplateOut,
    Unauthorized,
)


class TokenAuthMiddleware:
    """Rejects every HTTP request and WebSocket handshake without a valid control-plane token."""

    def __init__(self, app: ASGIApp, key: HostKey) -> None:
        self.app = app
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token:
                raise TokenError("missing bearer token")
            self.key.verify_control_plane_token(token.strip())
        except TokenError as exc:
            await self._deny(scope, receive, send, str(exc))
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _deny(scope: Scope, receive: Receive, send: Send, why: str) -> None:
        body = json.dumps(Unauthorized(f"unauthorized: {why}").body()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})


def create_app(agent: HostAgent, key: HostKey, lifespan: Any = None) -> FastAPI:
    """The API over `agent`. `lifespan` (optional) starts and stops the agent with the server."""
    app = FastAPI(title="Wrenn host agent", version=agent.info().version, docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=lifespan)
    app.add_middleware(TokenAuthMiddleware, key=key)

    @app.exception_handler(AgentError)
    async def agent_error(_: Request, exc: AgentError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(BadRequest(str(exc.errors()[:3])).body(), status_code=400)

    # ---- capsules -------------------------------------------------------------------------------

    @app.get("/v1/info")
    async def info() -> AgentInfo:
        return agent.info()

    @app.get("/v1/capsules")
    async def list_capsules() -> list[CapsuleInfo]:
        return agent.list_capsules()

    @app.post("/v1/capsules", status_code=201)
    async def create(req: CreateCapsuleRequest) -> CapsuleInfo:
        return await agent.create(req)

    @app.post("/v1/warm-pool/claim", status_code=201, response_model=None)
    async def claim(req: CreateCapsuleRequest) -> CapsuleInfo | Response:
        info = await agent.claim(req)
        return Response(status_code=204) if info is None else info

    @app.post("/v1/warm-pool/drain")
    async def drain(req: DrainWarmPoolRequest) -> DrainWarmPoolResponse:
        return DrainWarmPoolResponse(drained=await agent.pool.drain(req.key))

    @app.get("/v1/capsules/{capsule_id}")
    async def get(capsule_id: str) -> CapsuleInfo:
        return agent.get(capsule_id)

    @app.delete("/v1/capsules/{capsule_id}", status_code=204)
    async def destroy(capsule_id: str) -> Response:
        await agent.destroy(capsule_id)
        return Response(status_code=204)

    @app.post("/v1/capsules/{capsule_id}/pause")
    async def pause(capsule_id: str) -> CapsuleInfo:
        return await agent.pause(capsule_id)

    @app.post("/v1/capsules/{capsule_id}/resume")
    async def resume(capsule_id: str) -> CapsuleInfo:
        return await agent.resume(capsule_id)

    @app.post("/v1/capsules/{capsule_id}/ping", status_code=204)
    async def ping(capsule_id: str) -> Response:
        agent.ping(capsule_id)
        return Response(status_code=204)

    @app.post("/v1/capsules/{capsule_id}/snapshot", status_code=201)
    async def snapshot(capsule_id: str, req: SnapshotRequest) -> TemplateOut:
        return await agent.snapshot(capsule_id, req)

    @app.get("/v1/capsules/{capsule_id}/metrics")
    async def metrics(capsule_id: str, range: str = Query("10m")) -> CapsuleMetrics:
        return agent.metrics_for(capsule_id, range)

    @app.get("/v1/templates")
    async def templates(team_id: str | None = None) -> list[TemplateOut]:
        return agent.list_templates(team_id)

    @app.delete("/v1/templates/{team_id}/{name}", status_code=204)
    async def delete_template(team_id: str, name: str) -> Response:
        agent.delete_template(team_id, name)
        return Response(status_code=204)

    # ---- exec and processes ---------------------------------------------------------------------

    @app.post("/v1/capsules/{capsule_id}/exec", response_model=None)
    async def exec_(capsule_id: str, req: ExecRequest) -> ExecResponse | JSONResponse:
        result = await agent.exec(capsule_id, req)
        if isinstance(result, BackgroundExecResponse):
            return JSONResponse(result.model_dump(), status_code=202)
        return result

    @app.post("/v1/capsules/{capsule_id}/guest/{name}")
    async def guest_call(capsule_id: str, name: str, request: Request) -> Response:
        op = GUEST_OPS.get(name)
        if op is None:
            raise NotFound(f"no guest operation {name!r}")
        try:
            req = op.request.model_validate_json(await request.body())
        except ValidationError as exc:
            raise BadRequest(str(exc.errors(include_url=False)[:3])) from None
        answer = await agent.guest_call(capsule_id, op, req)
        return Response(answer.model_dump_json(), media_type="application/json")

    @app.websocket("/v1/capsules/{capsule_id}/processes/{selector}/stream")
    async def process_stream(ws: WebSocket, capsule_id: str, selector: str) -> None:
        await ws.accept()
        await channels.process_stream(agent, capsule_id, selector, _inbox(ws), ws.send_json)
        await _close(ws)

    @app.websocket("/v1/capsules/{capsule_id}/exec/stream")
    async def exec_stream(ws: WebSocket, capsule_id: str) -> None:
        await ws.accept()
        await channels.exec_stream(agent, capsule_id, _inbox(ws), ws.send_json)
        await _close(ws)

    @app.websocket("/v1/capsules/{capsule_id}/pty")
    async def pty(ws: WebSocket, capsule_id: str) -> None:
        await ws.accept()
        await channels.pty(agent, capsule_id, _inbox(ws), ws.send_json)
        await _close(ws)

    # ---- files ----------------------------------------------------------------------------------

    @app.put("/v1/capsules/{capsule_id}/files", status_code=204)
    async def write_file(capsule_id: str, request: Request, path: str = Query(..., min_length=1)) -> Response:
        await agent.write_file(capsule_id, path, request.stream())
        return Response(status_code=204)

    @app.get("/v1/capsules/{capsule_id}/files")
    async def read_file(capsule_id: str, path: str = Query(..., min_length=1)) -> StreamingResponse:
        chunks = await agent.read_file(capsule_id, path)
        return StreamingResponse(chunks, media_type="application/octet-stream")

    @app.websocket("/v1/capsules/{capsule_id}/ports/{port}/tunnel")
    async def port_tunnel(ws: WebSocket, capsule_id: str, port: int) -> None:
        await ports.tunnel(ws, agent, capsule_id, port)

    # ---- autonomous events ----------------------------------------------------------------------

    @app.websocket("/v1/events")
    async def events(ws: WebSocket, after: int | None = None) -> None:
        await ws.accept()

        async def signed() -> AsyncIterator[dict[str, Any]]:
            async for ev in agent.events.subscribe(after):
                yield {"type": "event", "seq": ev.seq, "token": key.agent_token(ev.model_dump())}

        await channels.relay(signed(), _inbox(ws), ws.send_json, on_client=None)
        await _close(ws)

    return app


async def _inbox(ws: WebSocket) -> AsyncIterator[dict[str, Any]]:
    """Client messages until the client disconnects; non-object messages are answered with an error."""
    while True:
        try:
            msg = await ws.receive_json()
        except WebSocketDisconnect:
            return
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
            await ws.send_json({"type": "error", "data": "messages must be JSON objects", "fatal": False})
            continue
        if isinstance(msg, dict):
            yield msg
        else:
            await ws.send_json({"type": "error", "data": "messages must be JSON objects", "fatal": False})


async def _close(ws: WebSocket) -> None:
    with contextlib.suppress(Exception):
        await ws.close()
