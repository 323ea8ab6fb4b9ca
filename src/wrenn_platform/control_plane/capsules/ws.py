"""Capsule WebSockets relayed to an agent channel, message for message (the contract's tables).

The handshake is authorised like any request (tenant: API key, or session cookie; admin routes:
their own `Resolve`) and refused with a plain HTTP status and the contract's error body — 401, 403,
404 (also another team's capsule), 409 (not running) — before any upgrade.

A browser sends the session cookie with any page's WebSocket, and the CSRF header cannot be set on
one: a cookie-authenticated handshake must come from the API's own origin (`Origin` equal to the
public URL's, or naming the host the request was sent to), else 403 `csrf_failed`. A handshake
without `Origin` is no browser's; an API-key handshake carries no ambient credential.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from wrenn_platform.agent_link.client import AgentClient, Channel
from wrenn_platform.wire.agent import AgentError

from ..auth.principal import Principal, require_key_or_session
from ..errors import ApiError, error_body
from ..settings import Settings
from .service import CapsuleService


async def deny(ws: WebSocket, exc: ApiError) -> None:
    response = JSONResponse(error_body(exc.code, exc.message, exc.extra), status_code=exc.status)
    try:
        await ws.send_denial_response(response)
    except RuntimeError:  # server without the denial-response extension: refuse the upgrade instead
        await ws.close(code=1008, reason=exc.message[:120])


Resolve = Callable[[Request, AsyncSession, str], Awaitable[Principal]]
"""Who is asking, from the handshake as an HTTP request, a database session and the capsule id."""


async def tenant(request: Request, db: AsyncSession, capsule_id: str) -> Principal:
    return await require_key_or_session(request, db, request.app.state.settings)


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def check_origin(request: Request, settings: Settings) -> None:
    origin = request.headers.get("origin")
    if origin is None:
        return
    allowed = {_origin_of(settings.public_url)} - {""}
    host = request.headers.get("host", "")
    if host:
        allowed |= {f"http://{host}".lower(), f"https://{host}".lower()}
    if origin.lower().rstrip("/") not in allowed:
        raise ApiError(403, "csrf_failed", f"cross-origin WebSocket refused: Origin {origin[:200]} is not this API's")


async def authorize(ws: WebSocket, capsule_id: str, doing: str, resolve: Resolve = tenant) -> AgentClient | None:
    """The agent client for the principal's running capsule, or None after refusing the handshake.
    The principal is the caller's (`tenant`) unless `resolve` works it out otherwise (the admin routes)."""
    app = ws.app
    service: CapsuleService = app.state.capsules
    request = Request({**ws.scope, "type": "http", "method": "GET"})
    async with app.state.sessionmaker() as db:
        try:
            principal = await resolve(request, db, capsule_id)
            if principal.kind == "session":
                check_origin(request, app.state.settings)
            return await service.running_client(db, principal, capsule_id, doing)
        except ApiError as exc:
            await deny(ws, exc)
            return None


# How long PTY output waits for the client's first input to tell its dialect (see `relay`).
DIALECT_WAIT_S = 1.0


async def relay(ws: WebSocket, channel: Channel, raw_input: bool = False) -> None:
    """Pump agent → tenant and tenant → agent until either side ends; then close the tenant socket.

    `raw_input` (the PTY): a binary frame is input bytes, as the published client sends keystrokes;
    text frames are the contract's JSON messages. The client's first input tells its dialect, and
    output follows it: binary frames for a client that types bytes (the published client reads
    output only from those), the contract's `output` messages for one that sends `input` messages.
    Output before that first input waits for it, once, at most DIALECT_WAIT_S, then goes out as
    the contract's messages (a client that only watches) until an input tells otherwise.
    """
    await ws.accept()
    binary_output = False
    told = asyncio.Event()  # the client's first input has told its dialect
    waited = not raw_input  # output has waited for that once already (or need not)

    def learn(binary: bool) -> None:
        nonlocal binary_output
        if not told.is_set():
            binary_output = binary
            told.set()

    async def outbound() -> None:
        nonlocal waited
        try:
            async for msg in channel:
                if msg.get("type") == "output" and not waited:
                    waited = True
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(told.wait(), DIALECT_WAIT_S)
                if binary_output and msg.get("type") == "output":
                    await ws.send_bytes(base64.b64decode(msg.get("data", "")))
                else:
                    await ws.send_json(msg)
        except AgentError as exc:
            await ws.send_json({"type": "error", "data": exc.message, "fatal": True})

    async def inbound() -> None:
        while True:
            frame = await ws.receive()
            if frame["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(frame.get("code", 1000))
            msg: Any
            if frame.get("bytes") is not None:
                if not raw_input:
                    await ws.send_json({"type": "error", "data": "messages must be JSON objects", "fatal": False})
                    continue
                learn(binary=True)
                msg = {"type": "input", "data": base64.b64encode(frame["bytes"]).decode()}
            else:
                try:
                    msg = json.loads(frame.get("text") or "")
                except json.JSONDecodeError:
                    msg = None
                if not isinstance(msg, dict):
                    await ws.send_json({"type": "error", "data": "messages must be JSON objects", "fatal": False})
                    continue
                if msg.get("type") == "input":
                    learn(binary=False)
            try:
                await channel.send(msg)
            except AgentError:
                return

    out = asyncio.create_task(outbound())
    inp = asyncio.create_task(inbound())
    try:
        done, _ = await asyncio.wait({out, inp}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (out, inp):
            task.cancel()
        for task in (out, inp):
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, Exception):
                await task
    if out in done:
        with contextlib.suppress(Exception):
            await ws.close()
