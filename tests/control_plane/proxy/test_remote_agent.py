"""The port proxy through a remote host agent: a `wrenn agent` process joined to a server without
an embedded agent; requests to a capsule on it travel control plane → tunnel over the agent link
(authenticated by the host key) → the capsule's port. HTTP with keep-alive, bodies both ways,
WebSocket, the 502 for a closed port and auto-resume, as with the embedded agent."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets

from wrenn_platform.host_agent.templates import TemplateInfo

from ..admin_capsules.conftest import _make_admin
from ..capsules.conftest import ServerThread, _make_tenant, cache_dir_of, make_settings, scratch_root, wait_status
from ..capsules.test_remote_agent import Rig, _create_host, _create_when_reachable, _free_port, agent_process
from .conftest import APP_PORT, start_servers

pytestmark = pytest.mark.root


def test_proxy_through_a_remote_agent(minimal_template: TemplateInfo) -> None:
    cache_dir = cache_dir_of(minimal_template)
    with scratch_root() as root:
        database_url = f"sqlite+aiosqlite:///{root / 'wrenn.db'}"
        server = ServerThread(make_settings(root / "data", database_url, cache_dir, embedded_agent=False,
                                            proxy_domain="localhost"))
        server.start()
        try:
            tenant = asyncio.run(_make_tenant(database_url, with_session=False))
            admin = asyncio.run(_make_admin(database_url))
            rig = Rig(server, root, tenant.api_key, admin.session_id or "", admin.csrf or "")
            _, token = asyncio.run(_create_host(rig))
            with agent_process(root, cache_dir, server.url, token, f"127.0.0.1:{_free_port()}"):
                asyncio.run(_scenario(rig, server.port))
        finally:
            server.stop()


async def _scenario(rig: Rig, port: int) -> None:
    async with rig.api() as api:
        capsule_id, _ = await _create_when_reachable(api, rig.root / "agent.log")
        try:
            await _through_the_tunnel(rig, api, capsule_id, port)
        finally:
            assert (await api.delete(f"/v1/capsules/{capsule_id}")).status_code == 202
            await wait_status(api, capsule_id, "stopped")


async def _through_the_tunnel(rig: Rig, api: httpx.AsyncClient, capsule_id: str, port: int) -> None:
    await start_servers(api, capsule_id)
    host = f"{APP_PORT}-{capsule_id}.localhost:{port}"
    async with httpx.AsyncClient(base_url=rig.server.url, headers={"Host": host}, timeout=60) as c:
        answers = [await c.get("/") for _ in range(10)]
        assert all(r.status_code == 200 and r.text == "hello from the capsule" for r in answers)
        big = await c.get("/big?mib=8")
        assert big.content == bytes(range(256)) * 4096 * 8
        data = bytes(range(256)) * 8192

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 65536):
                yield data[i:i + 65536]

        posted = await c.post("/digest", content=chunks())
        assert posted.json() == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    async with httpx.AsyncClient(base_url=rig.server.url, headers={"Host": f"9999-{capsule_id}.localhost"}) as c:
        closed = await c.get("/")
    assert closed.status_code == 502 and "port 9999" in closed.json()["error"]["message"]
    async with websockets.connect(f"ws://{host}/ws") as ws:
        await ws.send("over the tunnel")
        assert await ws.recv() == "over the tunnel"

    assert (await api.post(f"/v1/capsules/{capsule_id}/pause")).status_code == 202
    await wait_status(api, capsule_id, "paused")
    async with httpx.AsyncClient(base_url=rig.server.url, headers={"Host": host}, timeout=60) as c:
        woken = await c.get("/")
    assert woken.status_code == 200 and woken.text == "hello from the capsule"
    assert (await api.get(f"/v1/capsules/{capsule_id}")).json()["status"] == "running"
