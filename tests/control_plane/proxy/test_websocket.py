"""WebSocket through the port proxy: the capsule's server does the handshake (subprotocol
included), text and a 1 MiB binary message echo back whole, a close ends both sides; a port with
nothing listening or an unknown capsule refuses the handshake with the proxy's status."""

from __future__ import annotations

import pytest
import websockets

from .conftest import APP_PORT, Server

pytestmark = pytest.mark.root


async def test_websocket_echo_through_the_proxy(server: Server, served: str) -> None:
    url = f"ws://{server.host(served, APP_PORT)}/ws"
    async with websockets.connect(url, subprotocols=["echo"], max_size=4 << 20) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "echo"
        await ws.send("hello")
        assert await ws.recv() == "hello"
        blob = bytes(range(256)) * 4096
        await ws.send(blob)
        assert await ws.recv() == blob
        await ws.send("ünïcode ✓")
        assert await ws.recv() == "ünïcode ✓"
    assert ws.close_code == 1000


@pytest.mark.parametrize(("capsule", "port", "status"), [("served", 9999, 502), ("cl-0000000000000000", APP_PORT, 404)])
async def test_websocket_refusals(server: Server, served: str, capsule: str, port: int, status: int) -> None:
    capsule_id = served if capsule == "served" else capsule
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(f"ws://{server.host(capsule_id, port)}/ws"):
            pass
    assert refused.value.response.status_code == status
    assert (b"port 9999" in refused.value.response.body) == (status == 502)
