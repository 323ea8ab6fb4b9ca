"""A tiny HTTP/1.1 GET over asyncio streams: waiting for envd without a client library's set-up
cost on the create path."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable


async def http_get(
    host: str, port: int, path: str, headers: dict[str, str] | None = None, within: float = 2.0
) -> tuple[int, bytes]:
    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, body

    return await asyncio.wait_for(go(), within)


async def wait_for_health(host: str, port: int, within: float, alive: Callable[[], bool] | None = None) -> None:
    """Poll `GET /health` until it answers 2xx; `alive()` returning False aborts early."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = 0.002
    while True:
        try:
            status, _ = await http_get(host, port, "/health", within=1.0)
            if 200 <= status < 300:
                return
        except (TimeoutError, OSError, ValueError, IndexError):
            pass
        if alive is not None and not alive():
            raise RuntimeError("the capsule exited while starting")
        if loop.time() > deadline:
            raise TimeoutError(f"envd did not answer on {host}:{port} within {within:.0f} s")
        await asyncio.sleep(delay)
        delay = min(delay * 1.2, 0.01)


async def envd_version(host: str, port: int, token: str) -> str:
    try:
        status, body = await http_get(host, port, "/version", {"X-Access-Token": token})
        if status == 200:
            return str(json.loads(body)["version"])
    except (TimeoutError, OSError, ValueError, KeyError, IndexError, TypeError):
        pass
    return "unknown"
