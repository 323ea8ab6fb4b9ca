"""Fixtures of the events, audit and channel tests: fast relay/keepalive settings, the app served by a
real uvicorn on a random loopback port (`live`), an SSE client, and local HTTP receivers standing
in for the notification providers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wrenn_platform.control_plane.db.models import Capsule, Event
from wrenn_platform.control_plane.settings import Settings

EVENT_TIMEOUT_S = 10.0


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """The suite's settings, with the relay, hubs, keepalives and retries made fast."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secure_cookies=False,
        embedded_agent=False,
        public_url="http://testserver",
        events_poll_seconds=0.2,
        events_keepalive_seconds=0.5,
        channel_timeout_seconds=2.0,
        channel_backoff_seconds=0.2,
        channel_backoff_max_seconds=1.0,
        channel_max_attempts=20,
        channel_allow_private_destinations=True,  # the providers are local receivers on 127.0.0.1
        channel_discord_url="http://127.0.0.1:",
        channel_slack_url="http://127.0.0.1:",
        channel_teams_url="http://127.0.0.1:",
        channel_googlechat_url="http://127.0.0.1:",
    )


class Served:
    """An ASGI app (already started, or without a lifespan) under uvicorn in this event loop, on a
    loopback port kept across restarts."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, lifespan="off", log_level="warning", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._server = self._task = None


@pytest.fixture
async def live(app: FastAPI) -> AsyncIterator[Served]:
    """The test's app (already started) served over real HTTP."""
    served = Served(app)
    await served.start()
    yield served
    await served.stop()


# ---- SSE client ---------------------------------------------------------------------------------


@dataclass
class Frame:
    event: str = ""
    id: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    comment: str | None = None


class SSEClient:
    """Reads an SSE stream in the background; `next_event()` skips comments, which are counted."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.frames: asyncio.Queue[Frame | None] = asyncio.Queue()
        self.comments: list[str] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        current = Frame()
        data: list[str] = []
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if data or current.event:
                        current.data = json.loads("\n".join(data)) if data else {}
                        await self.frames.put(current)
                    current, data = Frame(), []
                elif line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    await self.frames.put(Frame(comment=line[1:].strip()))
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "data":
                        data.append(value)
                    elif name in ("event", "id"):
                        setattr(current, name, value)
        except (httpx.HTTPError, asyncio.CancelledError):
            pass
        finally:
            await self.frames.put(None)  # end of stream

    async def next_frame(self, within: float = EVENT_TIMEOUT_S) -> Frame | None:
        return await asyncio.wait_for(self.frames.get(), within)

    async def next_event(self, within: float = EVENT_TIMEOUT_S) -> Frame:
        async with asyncio.timeout(within):
            while True:
                frame = await self.frames.get()
                if frame is None:
                    raise EOFError("stream ended")
                if frame.comment is None:
                    return frame

    async def events(self, count: int, within: float = EVENT_TIMEOUT_S) -> list[Frame]:
        return [await self.next_event(within) for _ in range(count)]

    async def quiet(self, seconds: float) -> list[Frame]:
        """The events (not comments) that arrive within `seconds`: used to show nothing more came."""
        found: list[Frame] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    frame = await self.frames.get()
                    if frame is None:
                        break
                    if frame.comment is None:
                        found.append(frame)
        return found

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.response.aclose()


SSEOpener = Callable[..., Awaitable[SSEClient]]


@pytest.fixture
async def open_sse() -> AsyncIterator[SSEOpener]:
    """`await open_sse(base_url, path, headers=..., cookies=...)`: a connected SSE client (200 checked)."""
    opened: list[tuple[httpx.AsyncClient, SSEClient]] = []

    async def opener(base_url: str, path: str = "/v1/events/stream", *, headers: dict[str, str] | None = None,
                     cookies: dict[str, str] | None = None) -> SSEClient:
        client = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30, read=None), cookies=cookies)
        response = await client.send(client.build_request("GET", path, headers=headers), stream=True)
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        sse = SSEClient(response)
        opened.append((client, sse))
        return sse

    yield opener
    for client, sse in opened:
        await sse.aclose()
        await client.aclose()


def cookies_of(client: httpx.AsyncClient) -> dict[str, str]:
    return {name: value for name, value in client.cookies.items()}


# ---- events caused straight in the database -----------------------------------------------------


async def new_capsule(app: FastAPI, team_id: str, status: str = "starting", host_id: str | None = None) -> str:
    async with app.state.sessionmaker() as db:
        capsule = Capsule(team_id=team_id, status=status, template="minimal", host_id=host_id)
        db.add(capsule)
        await db.commit()
        return capsule.id


async def move_capsule(app: FastAPI, capsule_id: str, *statuses: str, error: str = "") -> None:
    """Each status in its own transaction, as the capsule service writes them (conditional UPDATE)."""
    from sqlalchemy import update

    for status in statuses:
        async with app.state.sessionmaker() as db:
            await db.execute(update(Capsule).where(Capsule.id == capsule_id).values(status=status, error=error))
            await db.commit()


async def published(app: FastAPI, within: float = EVENT_TIMEOUT_S) -> None:
    """Wait until the relay has numbered every committed event."""
    from sqlalchemy import func, select

    async with asyncio.timeout(within):
        while True:
            async with app.state.sessionmaker() as db:
                if not await db.scalar(select(func.count()).select_from(Event).where(Event.seq.is_(None))):
                    return
            await asyncio.sleep(0.05)


# ---- provider stand-ins -------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A local HTTP endpoint that records every request; `status` and `delay` script its answers."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.status = 200
        self.delay = 0.0
        self.arrived = asyncio.Event()
        self.served = Served(Starlette(routes=[
            Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT"])]))

    @property
    def url(self) -> str:
        return self.served.url

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        if self.delay:
            await asyncio.sleep(self.delay)
        self.requests.append(Received(request.method, request.url.path, dict(request.headers), body))
        self.arrived.set()
        if self.status >= 400:
            return JSONResponse({"error": "scripted failure"}, status_code=self.status)
        return JSONResponse({"ok": True, "event_id": "$evt"})

    async def wait_for(self, count: int, within: float = EVENT_TIMEOUT_S) -> list[Received]:
        async with asyncio.timeout(within):
            while len(self.requests) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.requests


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[[], Awaitable[Receiver]]]:
    made: list[Receiver] = []

    async def factory() -> Receiver:
        r = Receiver()
        await r.served.start()
        made.append(r)
        return r

    yield factory
    for r in made:
        await r.served.stop()
