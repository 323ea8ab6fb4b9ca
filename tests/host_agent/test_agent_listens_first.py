"""`wrenn agent` listens before its lifespan (where a joined agent starts heartbeating) has finished:
a control plane that places a capsule on the host the moment it turns online is not refused."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from wrenn_platform.cli.agent import listening_socket


def test_a_connection_made_during_the_lifespan_is_served_after_it() -> None:
    lifespan_entered, lifespan_may_end = threading.Event(), threading.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        lifespan_entered.set()
        await asyncio.to_thread(lifespan_may_end.wait, 30)
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning")
    sock = listening_socket(config)
    port = sock.getsockname()[1]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        assert lifespan_entered.wait(30)
        # The lifespan is still running: the port already takes connections (it was refused before).
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        answers: list[httpx.Response] = []
        asker = threading.Thread(target=lambda: answers.append(httpx.get(f"http://127.0.0.1:{port}/ping",
                                                                          timeout=30)))
        asker.start()
        lifespan_may_end.set()
        asker.join(30)
        assert [(r.status_code, r.json()) for r in answers] == [(200, {"pong": "yes"})]
    finally:
        lifespan_may_end.set()
        server.should_exit = True
        thread.join(30)
