"""The in-process `AgentClient` (see `agent_link.client`): direct calls into a `HostAgent` in this
process, used by `wrenn server`'s embedded agent and by a joined agent forwarding its own events.
Streams run the same `channels` sessions the agent's WebSocket API runs, talked to through queues."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from wrenn_platform.agent_link.client import Channel, Message
from wrenn_platform.agent_link.port_link import PortLink
from wrenn_platform.wire.agent import (
    AgentError,
    AgentInfo,
    BackgroundExecResponse,
    CapsuleInfo,
    CapsuleMetrics,
    CreateCapsuleRequest,
    DrainWarmPoolRequest,
    ExecRequest,
    ExecResponse,
    GuestOp,
    Req,
    Resp,
    SandboxEvent,
    SnapshotRequest,
    TemplateOut,
)

from . import channels
from .ports import LocalPorts
from .service import HostAgent

_CLOSED: Message = {"type": "__closed__"}



class _QueueChannel:
    """A session of `host_agent.channels` run as a task, talked to through two queues."""

    def __init__(self, run: Callable[[AsyncIterator[Message], channels.Send], Awaitable[None]]) -> None:
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(run))

    async def _run(self, run: Callable[[AsyncIterator[Message], channels.Send], Awaitable[None]]) -> None:
        try:
            await run(self._inbox_iter(), self._outbox.put)
        finally:
            self._outbox.put_nowait(_CLOSED)

    async def _inbox_iter(self) -> AsyncIterator[Message]:
        while (msg := await self._inbox.get()) is not _CLOSED:
            yield msg

    async def __aiter__(self) -> AsyncIterator[Message]:
        while (msg := await self._outbox.get()) is not _CLOSED:
            yield msg
        self._outbox.put_nowait(_CLOSED)  # later iterations end at once too

    async def send(self, msg: Message) -> None:
        if self._task.done():
            raise AgentError("stream is closed")
        await self._inbox.put(msg)

    async def aclose(self) -> None:
        self._inbox.put_nowait(_CLOSED)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 5)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class LocalAgentClient:
    """The embedded server's client: direct calls into a `HostAgent` in this process."""

    def __init__(self, agent: HostAgent) -> None:
        self.agent = agent

    async def info(self) -> AgentInfo:
        return self.agent.info()

    async def create(self, req: CreateCapsuleRequest) -> CapsuleInfo:
        return await self.agent.create(req)

    async def claim(self, req: CreateCapsuleRequest) -> CapsuleInfo | None:
        return await self.agent.claim(req)

    async def drain_warm_pool(self, req: DrainWarmPoolRequest) -> int:
        return await self.agent.pool.drain(req.key)

    async def list_capsules(self) -> list[CapsuleInfo]:
        return self.agent.list_capsules()

    async def get(self, capsule_id: str) -> CapsuleInfo:
        return self.agent.get(capsule_id)

    async def destroy(self, capsule_id: str) -> None:
        await self.agent.destroy(capsule_id)

    async def pause(self, capsule_id: str) -> CapsuleInfo:
        return await self.agent.pause(capsule_id)

    async def resume(self, capsule_id: str) -> CapsuleInfo:
        return await self.agent.resume(capsule_id)

    async def ping(self, capsule_id: str) -> None:
        self.agent.ping(capsule_id)

    async def snapshot(self, capsule_id: str, req: SnapshotRequest) -> TemplateOut:
        return await self.agent.snapshot(capsule_id, req)

    async def list_templates(self, team_id: str | None = None) -> list[TemplateOut]:
        return self.agent.list_templates(team_id)

    async def delete_template(self, team_id: str, name: str) -> None:
        self.agent.delete_template(team_id, name)

    async def metrics(self, capsule_id: str, range_name: str = "10m") -> CapsuleMetrics:
        return self.agent.metrics_for(capsule_id, range_name)

    async def exec(self, capsule_id: str, req: ExecRequest) -> ExecResponse | BackgroundExecResponse:
        return await self.agent.exec(capsule_id, req)

    async def guest(self, capsule_id: str, op: GuestOp[Req, Resp], req: Req) -> Resp:
        return await self.agent.guest_call(capsule_id, op, req)

    @asynccontextmanager
    async def _channel(
        self, run: Callable[[AsyncIterator[Message], channels.Send], Awaitable[None]]
    ) -> AsyncIterator[Channel]:
        ch = _QueueChannel(run)
        try:
            yield ch
        finally:
            await ch.aclose()

    def exec_stream(self, capsule_id: str) -> AbstractAsyncContextManager[Channel]:
        return self._channel(lambda inbox, send: channels.exec_stream(self.agent, capsule_id, inbox, send))

    def pty(self, capsule_id: str) -> AbstractAsyncContextManager[Channel]:
        return self._channel(lambda inbox, send: channels.pty(self.agent, capsule_id, inbox, send))

    def process_stream(self, capsule_id: str, selector: str) -> AbstractAsyncContextManager[Channel]:
        return self._channel(
            lambda inbox, send: channels.process_stream(self.agent, capsule_id, selector, inbox, send))

    @asynccontextmanager
    async def read_file(self, capsule_id: str, path: str) -> AsyncIterator[AsyncIterator[bytes]]:
        chunks = await self.agent.read_file(capsule_id, path)
        try:
            yield chunks
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async def write_file(self, capsule_id: str, path: str, chunks: AsyncIterable[bytes]) -> None:
        await self.agent.write_file(capsule_id, path, aiter(chunks))

    def events(self, after: int | None = None) -> AsyncGenerator[SandboxEvent, None]:
        return self.agent.events.subscribe(after)

    def port_link(self) -> PortLink:
        return LocalPorts(self.agent)

    async def aclose(self) -> None:
        pass
