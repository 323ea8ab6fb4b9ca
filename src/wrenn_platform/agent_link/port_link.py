"""The agent link's part for capsule ports: how the control plane reaches a capsule's port through
the host agent that owns it. Every agent client has `port_link()`, a `PortLink` whose
`open(capsule_id, port)` returns an `Upstream`: a byte stream to the port (`reader` a
`StreamReader`, `write` + `drain`, `close`).

- the embedded agent (`LocalAgentClient`): `host_agent.ports.LocalPorts`, a direct TCP connection
  from this process to the slot's address (the short path), as a `TcpUpstream`;
- a remote agent (`HttpAgentClient`): `TunnelPorts` here, the agent's tunnel WebSocket
  (`wire.ports.tunnel_path`) signed with the host's key like every other agent call.

This module imports neither the control plane nor the agent: it belongs with the agent client.

Errors are the agent wire's (`NotFound`, `Conflict`, `BadRequest`, `PortClosed`), or
`agent_link.errors.AgentUnreachable` when the agent cannot be reached at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Protocol

import websockets

from wrenn_platform.agent_link.auth import HostKey, bearer
from wrenn_platform.agent_link.errors import AgentUnreachable
from wrenn_platform.wire.agent import error_from_body
from wrenn_platform.wire.ports import CONNECT_TIMEOUT_S, PortClosed, tunnel_path

_LIMIT = 64 * 1024
_OPEN_TIMEOUT_S = 10.0


class Upstream(Protocol):
    reader: asyncio.StreamReader

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...

    def is_closing(self) -> bool: ...


class PortLink(Protocol):
    def touch(self, capsule_id: str, port: int) -> None:
        """Check the capsule is running here and count a request as activity (a no-op where the
        agent sees the traffic itself)."""
        ...

    async def open(self, capsule_id: str, port: int) -> Upstream: ...


class TcpUpstream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self._writer = writer
        self.write = writer.write

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        self._writer.close()

    def is_closing(self) -> bool:
        return self._writer.is_closing() or self.reader.at_eof()


class TunnelUpstream:
    """A tunnel WebSocket seen as a byte stream: received messages feed `reader`."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.reader = asyncio.StreamReader(limit=_LIMIT)
        self._ws = ws
        self._out: list[bytes] = []
        self._pump = asyncio.create_task(self._receive())

    async def _receive(self) -> None:
        try:
            async for msg in self._ws:
                self.reader.feed_data(msg if isinstance(msg, bytes) else msg.encode())
        except websockets.ConnectionClosed:
            pass
        finally:
            self.reader.feed_eof()

    def write(self, data: bytes) -> None:
        self._out.append(data)

    async def drain(self) -> None:
        if self._out:
            data, self._out = b"".join(self._out), []
            await self._ws.send(data)

    def close(self) -> None:
        self._pump.cancel()
        task = asyncio.ensure_future(self._ws.close())
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def is_closing(self) -> bool:
        return self.reader.at_eof() or self._pump.done()


class TunnelPorts:
    """A remote agent's ports, at `base_url` (`http://host:port`), signing with `key`."""

    def __init__(self, base_url: str, key: HostKey) -> None:
        self._ws_base = "ws" + base_url[len("http"):]
        self._key = key

    def touch(self, capsule_id: str, port: int) -> None:
        pass  # the agent counts the tunnel's traffic

    async def open(self, capsule_id: str, port: int) -> Upstream:
        try:
            ws = await websockets.connect(
                self._ws_base + tunnel_path(capsule_id, port),
                additional_headers=bearer(self._key.control_plane_token()),
                open_timeout=_OPEN_TIMEOUT_S + CONNECT_TIMEOUT_S, max_size=None, compression=None)
        except websockets.InvalidStatus as exc:
            resp = exc.response
            body: object = bytes(resp.body or b"").decode(errors="replace")
            with contextlib.suppress(ValueError):
                body = json.loads(str(body))
            if isinstance(body, dict) and body.get("error", {}).get("code") == PortClosed.code:
                raise PortClosed(str(body["error"].get("message", ""))) from exc
            raise error_from_body(resp.status_code, body) from exc
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            raise AgentUnreachable(f"host agent unreachable: {exc}") from exc
        return TunnelUpstream(ws)
