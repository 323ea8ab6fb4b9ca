"""The published `wrenn` client's proxy flow, driven as published: `Capsule(...).get_url(port)`
gives `http://{port}-{id}.localhost:{server port}` for a client whose base URL is
`http://localhost:{server port}`; a server started in the capsule answers there, also after the
capsule was paused through the client."""

from __future__ import annotations

import asyncio
import sys

import httpx
import pytest

from .conftest import STATIC_PORT, Server, wait_listening

sys.path.append("/tmp/clients/lib/python3.11/site-packages")  # the published clients, installed for reading

pytestmark = pytest.mark.root


def test_get_url_of_a_capsule_server(server: Server) -> None:
    from wrenn import Capsule

    base_url = f"http://localhost:{server.port}"
    capsule = Capsule(api_key=server.a.api_key, base_url=base_url, wait=True)
    try:
        capsule.files.write("/tmp/site/index.txt", "from the published client\n")
        capsule.commands.run(f"python3 -m http.server {STATIC_PORT} --directory /tmp/site", background=True)

        async def listening() -> None:
            async with server.api(server.a) as api:
                await wait_listening(api, capsule.capsule_id, STATIC_PORT)

        asyncio.run(listening())
        url = capsule.get_url(STATIC_PORT)
        assert url == f"http://{STATIC_PORT}-{capsule.capsule_id}.localhost:{server.port}"
        r = httpx.get(f"{url}/index.txt", timeout=30)
        assert r.status_code == 200 and r.text == "from the published client\n"

        capsule.pause(wait=True)
        r = httpx.get(f"{url}/index.txt", timeout=30)  # wakes it
        assert r.status_code == 200 and r.text == "from the published client\n"
        assert capsule.is_running()
    finally:
        capsule.destroy()
