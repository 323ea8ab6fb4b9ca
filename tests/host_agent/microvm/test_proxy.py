"""The port proxy on the microvm runtime: `wrenn server` (a process, embedded agent on microvm)
reaches a server listening in a VM through the slot's address, and a request to the paused VM's
port resumes it and is answered. One VM (TCG boots cost seconds)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.control_plane.capsules.conftest import cache_dir_of, wait_status
from tests.control_plane.proxy.conftest import Server, create_capsule, proxy_server, wait_listening
from wrenn_platform.host_agent.runtime.microvm import disk
from wrenn_platform.host_agent.templates import TemplateInfo

pytestmark = [pytest.mark.vm, pytest.mark.root]

API_DEFAULT_DISK_MB = 5120
# A server that imports only `socket`: the stdlib http.server costs ~11 s of imports under TCG.
SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8000))
s.listen(16)
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 7\\r\\nConnection: close\\r\\n\\r\\nfrom vm")
    c.close()
"""


def test_proxy_and_auto_resume_on_microvm(minimal_template: TemplateInfo) -> None:
    disk.ensure_base_image(cache_dir_of(minimal_template) / "microvm", minimal_template.path, API_DEFAULT_DISK_MB)
    with proxy_server(minimal_template, "microvm", {"WRENN_PROXY_RESUME_TIMEOUT_SECONDS": "60"}) as srv:
        try:
            asyncio.run(_scenario(srv))
        except AssertionError:
            print(srv.log()[-6000:])  # the server's side of a failure
            raise


async def _scenario(srv: Server) -> None:
    async with srv.api(srv.a) as api:
        api.timeout = httpx.Timeout(120)
        capsule_id = await create_capsule(api)
        info = (await api.get(f"/v1/capsules/{capsule_id}")).json()
        assert info["metadata"]["runtime"] == "microvm", info
        r = await api.post(f"/v1/capsules/{capsule_id}/exec",
                           json={"cmd": "python3", "args": ["-c", SERVER], "background": True})
        assert r.status_code == 202, r.text
        await wait_listening(api, capsule_id, 8000, within=120)
        async with srv.proxied(capsule_id, 8000) as c:
            c.timeout = httpx.Timeout(120)
            first = await c.get("/")
            assert first.status_code == 200 and first.text == "from vm", first.text
            assert (await api.post(f"/v1/capsules/{capsule_id}/pause")).status_code == 202
            await wait_status(api, capsule_id, "paused", within=60)
            woken = await c.get("/")
        assert woken.status_code == 200 and woken.text == "from vm", woken.text
        assert (await api.get(f"/v1/capsules/{capsule_id}")).json()["status"] == "running"
