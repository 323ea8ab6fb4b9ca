"""The agent's bidirectional sessions — exec stream, PTY, process stream — independent of transport.

Each session reads client messages from `inbox` (an async iterator that ends when the client goes
away) and sends server messages with `send`; both are the contract's WebSocket message tables.
The HTTP API runs them over a WebSocket, the in-process client over two queues, so both behave
identically.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from wrenn_platform.host_agent.guest import PtySession
from wrenn_platform.host_agent.service import HostAgent
from wrenn_platform.wire.agent import AgentError, BadRequest, PtyConnect, PtyStart, StreamStart

Message = dict[str, Any]
Inbox = AsyncIterator[Message]
Send = Callable[[Message], Awaitable[None]]

PTY_PING_INTERVAL_S = 30.0


def error_message(exc: AgentError, fatal: bool = True) -> Message:
    return {"type": "error", "data": exc.message, "code": exc.code, "fatal": fatal}


async def _first(inbox: Inbox) -> Message | None:
    try:
        return await anext(inbox)
    except StopAsyncIteration:
        return None


async def relay(source: AsyncIterable[Message], inbox: Inbox, send: Send,
                on_client: Callable[[Message], Awaitable[None]] | None) -> None:
    """Send every message of `source`, hand client messages to `on_client`, until either side ends."""

    async def pump_out() -> None:
        try:
            async for msg in source:
                await send(msg)
        except AgentError as exc:
            await send(error_message(exc))

    async def pump_in() -> None:
        async for msg in inbox:
            if on_client is not None:
                await on_client(msg)

    out = asyncio.create_task(pump_out())
    inp = asyncio.create_task(pump_in())
    try:
        await asyncio.wait({out, inp}, return_when=asyncio.FIRST_COMPLETED)
        if inp.done() and inp.exception() is not None:
            raise inp.exception()  # type: ignore[misc]
    finally:
        for task in (out, inp):
            task.cancel()
        for task in (out, inp):
            with contextlib.suppress(BaseException):
                await task


async def process_stream(agent: HostAgent, capsule_id: str, selector: str, inbox: Inbox, send: Send) -> None:
    try:
        stream = agent.process_stream(capsule_id, selector)
    except AgentError as exc:
        await send(error_message(exc))
        return
    await relay(stream, inbox, send, on_client=None)


async def exec_stream(agent: HostAgent, capsule_id: str, inbox: Inbox, send: Send) -> None:
    first = await _first(inbox)
    if first is None:
        return
    try:
        session = await agent.exec_stream(capsule_id, StreamStart.model_validate(first))
    except ValidationError as exc:
        await send(error_message(BadRequest(f"first message must be a start message: {exc}")))
        return
    except AgentError as exc:
        await send(error_message(exc))
        return

    async def on_client(msg: Message) -> None:
        if msg.get("type") == "stop":
            await session.stop()

    try:
        await relay(session, inbox, send, on_client)
    finally:
        await session.aclose()


async def pty(agent: HostAgent, capsule_id: str, inbox: Inbox, send: Send) -> None:
    first = await _first(inbox)
    if first is None:
        return
    try:
        req: PtyStart | PtyConnect = (
            PtyConnect.model_validate(first) if first.get("type") == "connect" else PtyStart.model_validate(first)
        )
        session = await agent.pty(capsule_id, req)
    except ValidationError as exc:
        await send(error_message(BadRequest(f"first message must be start or connect: {exc}")))
        return
    except AgentError as exc:
        await send(error_message(exc))
        return

    async def ping() -> None:
        while True:
            await asyncio.sleep(PTY_PING_INTERVAL_S)
            await send({"type": "ping"})

    pinger = asyncio.create_task(ping())
    try:
        await send({"type": "started", "tag": session.tag, "pid": session.pid})
        await relay(session, inbox, send, lambda msg: _pty_input(session, msg, send))
    finally:
        pinger.cancel()
        await session.aclose()  # detaches; the PTY process keeps running for a reconnect


async def _pty_input(session: PtySession, msg: Message, send: Send) -> None:
    kind = msg.get("type")
    try:
        if kind == "input":
            await session.send_input(base64.b64decode(str(msg.get("data", "")), validate=True))
        elif kind == "resize":
            await session.resize(int(msg["cols"]), int(msg["rows"]))
        elif kind == "kill":
            await session.kill()
        elif kind == "pong":
            pass  # the published client's answer to our keepalive ping: nothing to do
        else:
            await send({"type": "error", "data": f"unknown message type {kind!r}", "fatal": False})
    except (binascii.Error, KeyError, ValueError, TypeError) as exc:
        await send({"type": "error", "data": f"bad {kind} message: {exc}", "fatal": False})
    except AgentError as exc:
        await send(error_message(exc, fatal=False))
