"""A capsule's TCP ports as the host reaches them, for the control plane's port proxy.

- `port_address(agent, capsule_id, port)`: where this host connects to the port (the slot's
  host-side address, which both runtimes route to the capsule); the capsule must be running, and
  asking counts as activity for its TTL. The embedded server's proxy calls it in process.
- `LocalPorts(agent)`: the embedded agent's `PortLink` (`LocalAgentClient.port_link()`): those
  connections, made in the server's own process;
- `tunnel(ws, agent, capsule_id, port)`: the agent API's `WS /v1/capsules/{id}/ports/{port}/tunnel`
  (authenticated by the host key like every agent route) for a remote control plane: one TCP
  connection to the port, relayed as binary WebSocket messages until either side ends; traffic
  keeps the capsule active. Nothing here listens on a capsule's behalf.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from wrenn_platform.agent_link.port_link import TcpUpstream, Upstream
from wrenn_platform.host_agent.service import HostAgent
from wrenn_platform.wire.agent import AgentError, Conflict
from wrenn_platform.wire.ports import CONNECT_TIMEOUT_S, PortClosed, check_port, closed_message

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


def port_address(agent: HostAgent, capsule_id: str, port: int) -> tuple[str, int]:
    check_port(port)
    rec = agent._running(capsule_id)
    host_ip = (rec.slot or {}).get("host_ip")
    if not host_ip:
        raise Conflict(f"capsule {capsule_id} has no network slot")
    rec.touch()
    return str(host_ip), port


async def connect(agent: HostAgent, capsule_id: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to the port; `PortClosed` when nothing accepts it."""
    host, port = port_address(agent, capsule_id, port)
    try:
        return await asyncio.wait_for(asyncio.open_connection(host, port, limit=_CHUNK), CONNECT_TIMEOUT_S)
    except TimeoutError as exc:
        raise PortClosed(closed_message(capsule_id, port, f"no answer within {CONNECT_TIMEOUT_S:g} s")) from exc
    except OSError as exc:
        raise PortClosed(closed_message(capsule_id, port, exc.strerror or str(exc))) from exc


class LocalPorts:
    def __init__(self, agent: HostAgent) -> None:
        self.agent = agent

    def touch(self, capsule_id: str, port: int) -> None:
        port_address(self.agent, capsule_id, port)

    async def open(self, capsule_id: str, port: int) -> Upstream:
        return TcpUpstream(*await connect(self.agent, capsule_id, port))


async def tunnel(ws: WebSocket, agent: HostAgent, capsule_id: str, port: int) -> None:
    try:
        reader, writer = await connect(agent, capsule_id, port)
    except AgentError as exc:
        await ws.send_denial_response(JSONResponse(exc.body(), status_code=exc.status))
        return
    await ws.accept()
    rec = agent._capsules.get(capsule_id)
    touch = rec.touch if rec is not None else (lambda: None)

    async def to_capsule() -> None:
        while True:
            msg = await ws.receive()
            data = msg.get("bytes")
            if msg["type"] == "websocket.disconnect":
                return
            if data:
                writer.write(data)
                await writer.drain()
                touch()

    async def from_capsule() -> None:
        while data := await reader.read(_CHUNK):
            await ws.send_bytes(data)
            touch()

    tasks = [asyncio.create_task(to_capsule()), asyncio.create_task(from_capsule())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError, RuntimeError):
                await task
        writer.close()
        with contextlib.suppress(Exception):
            await ws.close()
