"""Auto-resume and access through the port proxy: a paused capsule is resumed by requests to its
port (concurrent requests, one resume) and answers them, or says 504 past the bound; a capsule created with
`wrenn.proxy_auth: api_key` answers only requests carrying an API key of its own team."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from wrenn_platform.host_agent.templates import TemplateInfo

from ..capsules.conftest import wait_status
from .conftest import APP_PORT, Server, create_capsule, proxy_server, start_servers

pytestmark = pytest.mark.root


async def test_paused_capsule_resumes_once_for_concurrent_requests(server: Server, api_a: httpx.AsyncClient) -> None:
    capsule_id = await create_capsule(api_a)
    await start_servers(api_a, capsule_id)
    assert (await api_a.post(f"/v1/capsules/{capsule_id}/pause")).status_code == 202
    await wait_status(api_a, capsule_id, "paused")

    async with server.proxied(capsule_id, APP_PORT) as c:
        answers = await asyncio.gather(*(c.get("/") for _ in range(8)))
    assert [r.status_code for r in answers] == [200] * 8, [r.text for r in answers]
    assert all(r.text == "hello from the capsule" for r in answers)
    assert (await api_a.get(f"/v1/capsules/{capsule_id}")).json()["status"] == "running"
    resumes = re.findall(rf"capsule {capsule_id}: resuming for a request", server.log())
    assert len(resumes) == 1, server.log()[-3000:]


async def test_opt_in_requires_an_api_key_of_the_team(server: Server, api_a: httpx.AsyncClient) -> None:
    capsule_id = await create_capsule(api_a, metadata={"wrenn.proxy_auth": "api_key"})
    await start_servers(api_a, capsule_id)
    async with server.proxied(capsule_id, APP_PORT) as c:
        anonymous = await c.get("/")
        wrong = await c.get("/", headers={"X-API-Key": "wrn_" + "0" * 32})
        other_team = await c.get("/", headers={"X-API-Key": server.b.api_key})
        own = await c.get("/headers", headers={"X-API-Key": server.a.api_key})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    assert "X-API-Key" in anonymous.json()["error"]["message"]
    assert wrong.status_code == 401
    assert other_team.status_code == 404 and other_team.json()["error"]["code"] == "not_found"
    assert own.status_code == 200 and "x-api-key" not in own.json()

    # A paused opt-in capsule is not woken by a request without the key.
    assert (await api_a.post(f"/v1/capsules/{capsule_id}/pause")).status_code == 202
    await wait_status(api_a, capsule_id, "paused")
    async with server.proxied(capsule_id, APP_PORT) as c:
        assert (await c.get("/")).status_code == 401
        assert (await api_a.get(f"/v1/capsules/{capsule_id}")).json()["status"] == "paused"
        assert (await c.get("/", headers={"X-API-Key": server.a.api_key})).status_code == 200


async def test_unknown_access_rule_is_refused_at_create(api_a: httpx.AsyncClient) -> None:
    r = await api_a.post("/v1/capsules", json={"metadata": {"wrenn.proxy_auth": "password"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    assert "wrenn.proxy_auth" in r.json()["error"]["message"]


def test_a_resume_longer_than_the_bound_is_504(minimal_template: TemplateInfo) -> None:
    """With a bound too short for any resume, the request gets 504; the resume it started still
    completes (the capsule is not left half-way)."""
    with proxy_server(minimal_template, env={"WRENN_PROXY_RESUME_TIMEOUT_SECONDS": "0.001"}) as srv:
        asyncio.run(_timeout_scenario(srv))


async def _timeout_scenario(srv: Server) -> None:
    async with srv.api(srv.a) as api:
        capsule_id = await create_capsule(api)
        assert (await api.post(f"/v1/capsules/{capsule_id}/pause")).status_code == 202
        await wait_status(api, capsule_id, "paused")
        async with srv.proxied(capsule_id, APP_PORT) as c:
            r = await c.get("/")
        assert r.status_code == 504 and r.json()["error"]["code"] == "gateway_timeout", r.text
        await wait_status(api, capsule_id, "running")


async def test_proxy_traffic_keeps_the_capsule_active(server: Server, api_a: httpx.AsyncClient) -> None:
    """A capsule whose web app is in use is not auto-paused; once the requests stop, it is."""
    capsule_id = await create_capsule(api_a, timeout_sec=3)  # the server's minimum is 2 s here
    await start_servers(api_a, capsule_id)
    async with server.proxied(capsule_id, APP_PORT) as c:
        for _ in range(14):  # 7 s of traffic, more than twice the timeout
            assert (await c.get("/")).status_code == 200
            await asyncio.sleep(0.5)
    assert (await api_a.get(f"/v1/capsules/{capsule_id}")).json()["status"] == "running"
    await wait_status(api_a, capsule_id, "paused", within=15)
