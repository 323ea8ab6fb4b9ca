"""How the control plane talks to a host agent: one async interface, two implementations.

- `HttpAgentClient(base_url, key)` (here) — speaks the agent's HTTP + WebSocket API
  (`host_agent.api`), signing every request with the host's secret and verifying every event the
  agent sends;
- `host_agent.local_client.LocalAgentClient(agent)` — calls a `HostAgent` in the same process (the
  embedded server's agent). Only the embedded agent's module imports it, so a control plane that
  serves no agent of its own never loads the agent's code.

Both raise the `wrenn_platform.wire.agent` errors (`NotFound`, `Conflict`, `AlreadyExists`,
`BadRequest`, `GuestError`, `AgentError`), so control-plane code is the same for both.

Streams (`exec_stream`, `pty`, `process_stream`) are async context managers yielding a
`Channel`: iterate it for server messages and `send()` client messages — both exactly the public
contract's WebSocket tables, so the control plane relays a tenant's WebSocket message for message.
The first message of `exec_stream` must be `{"type": "start", ...}`, of `pty` `start` or `connect`.

Autonomous events (`sandbox.auto_paused`, `sandbox.stopped`, `sandbox.error`) come from
`events(after=seq)`, an endless async iterator of `SandboxEvent`; pass the last `seq` seen to
resume without gaps. Each one is the body of the contract's `POST /v1/hosts/sandbox-events`
(`event.contract_body()`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpx
import websockets
from pydantic import BaseModel, TypeAdapter

from wrenn_platform.agent_link.auth import HostKey, TokenError, bearer
from wrenn_platform.agent_link.errors import AgentUnreachable
from wrenn_platform.agent_link.port_link import PortLink, TunnelPorts
from wrenn_platform.wire.agent import (
    AgentError,
    AgentInfo,
    BackgroundExecResponse,
    CapsuleInfo,
    CapsuleMetrics,
    CreateCapsuleRequest,
    DrainWarmPoolRequest,
    DrainWarmPoolResponse,
    ExecRequest,
    ExecResponse,
    GuestError,
    GuestOp,
    Req,
    Resp,
    SandboxEvent,
    SnapshotRequest,
    TemplateOut,
    error_from_body,
)

log = logging.getLogger(__name__)

Message = dict[str, Any]
M = TypeVar("M", bound=BaseModel)
# A file stream may be long, but never silent for minutes.
_STREAM_TIMEOUT = httpx.Timeout(30.0, read=300.0, write=300.0)


class Channel(Protocol):
    def __aiter__(self) -> AsyncIterator[Message]: ...

    async def send(self, msg: Message) -> None: ...


class AgentClient(Protocol):
    """Everything the control plane asks of a host agent."""

    async def info(self) -> AgentInfo: ...
    async def create(self, req: CreateCapsuleRequest) -> CapsuleInfo: ...
    async def claim(self, req: CreateCapsuleRequest) -> CapsuleInfo | None:
        """A warm-pool capsule for `req`, handed over; None when the host has none ready."""
        ...
    async def drain_warm_pool(self, req: DrainWarmPoolRequest) -> int: ...
    async def list_capsules(self) -> list[CapsuleInfo]: ...
    async def get(self, capsule_id: str) -> CapsuleInfo: ...
    async def destroy(self, capsule_id: str) -> None: ...
    async def pause(self, capsule_id: str) -> CapsuleInfo: ...
    async def resume(self, capsule_id: str) -> CapsuleInfo: ...
    async def ping(self, capsule_id: str) -> None: ...
    async def snapshot(self, capsule_id: str, req: SnapshotRequest) -> TemplateOut: ...
    async def list_templates(self, team_id: str | None = None) -> list[TemplateOut]: ...
    async def delete_template(self, team_id: str, name: str) -> None: ...
    async def metrics(self, capsule_id: str, range_name: str = "10m") -> CapsuleMetrics: ...
    async def exec(self, capsule_id: str, req: ExecRequest) -> ExecResponse | BackgroundExecResponse: ...
    async def guest(self, capsule_id: str, op: GuestOp[Req, Resp], req: Req) -> Resp: ...
    def exec_stream(self, capsule_id: str) -> AbstractAsyncContextManager[Channel]: ...
    def pty(self, capsule_id: str) -> AbstractAsyncContextManager[Channel]: ...
    def process_stream(self, capsule_id: str, selector: str) -> AbstractAsyncContextManager[Channel]: ...
    def read_file(self, capsule_id: str, path: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]: ...
    async def write_file(self, capsule_id: str, path: str, chunks: AsyncIterable[bytes]) -> None: ...
    def events(self, after: int | None = None) -> AsyncGenerator[SandboxEvent, None]: ...
    def port_link(self) -> PortLink: ...  # capsule ports, for the port proxy (`port_link.py`)
    async def aclose(self) -> None: ...


# ---- over HTTP ------------------------------------------------------------------------------------


class _WsChannel:
    def __init__(self, ws: websockets.ClientConnection) -> None:
        self._ws = ws

    async def __aiter__(self) -> AsyncIterator[Message]:
        try:
            async for raw in self._ws:
                yield json.loads(raw)
        except websockets.ConnectionClosedError as exc:
            raise GuestError(f"agent stream broke: {exc}") from exc

    async def send(self, msg: Message) -> None:
        try:
            await self._ws.send(json.dumps(msg))
        except websockets.ConnectionClosed as exc:
            raise AgentError("stream is closed") from exc


class HttpAgentClient:
    """A remote agent at `base_url` (e.g. `http://10.0.0.5:7070`), authenticated with `key`."""

    def __init__(self, base_url: str, key: HostKey, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport,
                                       auth=_SignedAuth(key))
        self._ws_base = "ws" + self.base_url[len("http"):] if self.base_url.startswith("http") else self.base_url

    async def aclose(self) -> None:
        await self._http.aclose()

    def port_link(self) -> PortLink:
        return TunnelPorts(self.base_url, self.key)

    async def _call(self, method: str, path: str, *, json_body: Any = None, params: dict[str, Any] | None = None,
                    seconds: float | None = None) -> httpx.Response:
        kwargs: dict[str, Any] = {"json": json_body, "params": params}
        if seconds is not None:
            kwargs["timeout"] = seconds
        try:
            resp = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AgentUnreachable(f"host agent unreachable: {exc}") from exc
        if resp.status_code >= 400:
            raise _error(resp)
        return resp

    async def _model(self, model: type[M], method: str, path: str, **kw: Any) -> M:
        return model.model_validate((await self._call(method, path, **kw)).json())

    @staticmethod
    def _c(capsule_id: str, rest: str = "") -> str:
        return f"/v1/capsules/{quote(capsule_id, safe='')}{rest}"

    async def info(self) -> AgentInfo:
        return await self._model(AgentInfo, "GET", "/v1/info")

    async def create(self, req: CreateCapsuleRequest) -> CapsuleInfo:
        # long enough for a template's start command to get ready
        return await self._model(CapsuleInfo, "POST", "/v1/capsules", json_body=req.model_dump(), seconds=900)

    async def claim(self, req: CreateCapsuleRequest) -> CapsuleInfo | None:
        resp = await self._call("POST", "/v1/warm-pool/claim", json_body=req.model_dump())
        return None if resp.status_code == 204 else CapsuleInfo.model_validate(resp.json())

    async def drain_warm_pool(self, req: DrainWarmPoolRequest) -> int:
        return (await self._model(DrainWarmPoolResponse, "POST", "/v1/warm-pool/drain",
                                  json_body=req.model_dump())).drained

    async def list_capsules(self) -> list[CapsuleInfo]:
        return TypeAdapter(list[CapsuleInfo]).validate_python((await self._call("GET", "/v1/capsules")).json())

    async def get(self, capsule_id: str) -> CapsuleInfo:
        return await self._model(CapsuleInfo, "GET", self._c(capsule_id))

    async def destroy(self, capsule_id: str) -> None:
        await self._call("DELETE", self._c(capsule_id), seconds=120)

    async def pause(self, capsule_id: str) -> CapsuleInfo:
        return await self._model(CapsuleInfo, "POST", self._c(capsule_id, "/pause"), seconds=120)

    async def resume(self, capsule_id: str) -> CapsuleInfo:
        return await self._model(CapsuleInfo, "POST", self._c(capsule_id, "/resume"), seconds=120)

    async def ping(self, capsule_id: str) -> None:
        await self._call("POST", self._c(capsule_id, "/ping"))

    async def snapshot(self, capsule_id: str, req: SnapshotRequest) -> TemplateOut:
        return await self._model(TemplateOut, "POST", self._c(capsule_id, "/snapshot"),
                                 json_body=req.model_dump(), seconds=600)

    async def list_templates(self, team_id: str | None = None) -> list[TemplateOut]:
        params = {"team_id": team_id} if team_id is not None else None
        resp = await self._call("GET", "/v1/templates", params=params)
        return TypeAdapter(list[TemplateOut]).validate_python(resp.json())

    async def delete_template(self, team_id: str, name: str) -> None:
        await self._call("DELETE", f"/v1/templates/{quote(team_id, safe='')}/{quote(name, safe='')}")

    async def metrics(self, capsule_id: str, range_name: str = "10m") -> CapsuleMetrics:
        return await self._model(CapsuleMetrics, "GET", self._c(capsule_id, "/metrics"),
                                 params={"range": range_name})

    async def exec(self, capsule_id: str, req: ExecRequest) -> ExecResponse | BackgroundExecResponse:
        resp = await self._call("POST", self._c(capsule_id, "/exec"), json_body=req.model_dump(),
                                seconds=req.timeout_sec + 30)
        if resp.status_code == 202:
            return BackgroundExecResponse.model_validate(resp.json())
        return ExecResponse.model_validate(resp.json())

    async def guest(self, capsule_id: str, op: GuestOp[Req, Resp], req: Req) -> Resp:
        return await self._model(op.response, "POST", self._c(capsule_id, f"/guest/{op.name}"),
                                 json_body=req.model_dump())

    @asynccontextmanager
    async def _ws(self, path: str) -> AsyncIterator[Channel]:
        try:
            ws = await websockets.connect(
                self._ws_base + path, additional_headers=bearer(self.key.control_plane_token()),
                max_size=16 * 1024 * 1024, open_timeout=30)
        except websockets.InvalidStatus as exc:
            resp = exc.response
            raise error_from_body(resp.status_code, _json_or_text(bytes(resp.body or b""))) from exc
        except (OSError, websockets.WebSocketException) as exc:
            raise AgentUnreachable(f"host agent unreachable: {exc}") from exc
        try:
            yield _WsChannel(ws)
        finally:
            await ws.close()

    def exec_stream(self, capsule_id: str) -> AbstractAsyncContextManager[Channel]:
        return self._ws(self._c(capsule_id, "/exec/stream"))

    def pty(self, capsule_id: str) -> AbstractAsyncContextManager[Channel]:
        return self._ws(self._c(capsule_id, "/pty"))

    def process_stream(self, capsule_id: str, selector: str) -> AbstractAsyncContextManager[Channel]:
        return self._ws(self._c(capsule_id, f"/processes/{quote(selector, safe='')}/stream"))

    @asynccontextmanager
    async def read_file(self, capsule_id: str, path: str) -> AsyncIterator[AsyncIterator[bytes]]:
        req = self._http.build_request("GET", self._c(capsule_id, "/files"), params={"path": path},
                                       timeout=_STREAM_TIMEOUT)
        try:
            resp = await self._http.send(req, stream=True)
        except httpx.HTTPError as exc:
            raise AgentUnreachable(f"host agent unreachable: {exc}") from exc
        try:
            if resp.status_code >= 400:
                await resp.aread()
                raise _error(resp)
            yield resp.aiter_bytes()
        finally:
            await resp.aclose()

    async def write_file(self, capsule_id: str, path: str, chunks: AsyncIterable[bytes]) -> None:
        try:
            resp = await self._http.put(self._c(capsule_id, "/files"), params={"path": path},
                                        content=chunks, timeout=_STREAM_TIMEOUT)
        except httpx.HTTPError as exc:
            raise AgentUnreachable(f"host agent unreachable: {exc}") from exc
        if resp.status_code >= 400:
            raise _error(resp)

    async def events(self, after: int | None = None, retry_s: float = 1.0) -> AsyncGenerator[SandboxEvent, None]:
        """Verified events, reconnecting (and resuming after the last seq) whenever the link drops."""
        last = after
        while True:
            query = "" if last is None else f"?after={last}"
            try:
                async with self._ws("/v1/events" + query) as ch:
                    async for msg in ch:
                        try:
                            claims = self.key.verify_agent_token(str(msg.get("token", "")))
                            ev = SandboxEvent.model_validate(claims["msg"])
                        except (TokenError, KeyError, ValueError) as exc:
                            log.error("dropping unverifiable event from %s: %s", self.base_url, exc)
                            continue
                        last = ev.seq
                        yield ev
            except AgentError as exc:
                log.warning("event stream from %s lost: %s", self.base_url, exc.message)
            if last is None:
                last = 0  # we were connected: after a reconnect, replay what the agent kept
            await asyncio.sleep(retry_s)


class _SignedAuth(httpx.Auth):
    """A fresh short-lived token on every request."""

    def __init__(self, key: HostKey) -> None:
        self.key = key

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {self.key.control_plane_token()}"
        yield request


def _json_or_text(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


def _error(resp: httpx.Response) -> AgentError:
    return error_from_body(resp.status_code, _json_or_text(resp.content))
