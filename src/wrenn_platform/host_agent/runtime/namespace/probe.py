"""A tiny HTTP/1.1 GET over asyncio streams: waiting for envd without a client library's set-up
cost on the create path."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable


async def http_get(
    host: str,
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    within: float = 2.0,
    method: str = "GET",
    body: bytes = b"",
) -> tuple[int, bytes]:
    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            if method != "GET":
                lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
        head, _, content = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, content

    return await asyncio.wait_for(go(), within)


async def wait_for_health(host: str, port: int, within: float, alive: Callable[[], bool] | None = None) -> None:
    """Poll `GET /health` until it answers 2xx; `alive()` returning False aborts early."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = 0.001  # a refused connect costs ~0.1 ms: polling often keeps the wait after envd is up short
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
        delay = min(delay * 1.2, 0.003)


async def envd_version(host: str, port: int, token: str) -> str:
    try:
        status, body = await http_get(host, port, "/version", {"X-Access-Token": token})
        if status == 200:
            return str(json.loads(body)["version"])
    except (TimeoutError, OSError, ValueError, KeyError, IndexError, TypeError):
        pass
    return "unknown"


async def envd_init(host: str, port: int, token: str, env_vars: dict[str, str], default_user: str) -> None:
    """`POST /init` with the capsule's default user and environment variables."""
    body = json.dumps({"envVars": env_vars, "defaultUser": default_user}).encode()
    headers = {"X-Access-Token": token, "Content-Type": "application/json"}
    status, reply = await http_get(host, port, "/init", headers, method="POST", body=body)
    if status not in (200, 204):
        raise RuntimeError(f"envd /init answered {status}: {reply[:200]!r}")
