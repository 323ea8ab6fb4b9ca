"""The host join flow: registration token → host JWT + refresh token (rotated, single use),
heartbeat, sandbox events; and the embedded agent joined through it."""

from __future__ import annotations

import asyncio

import httpx

from wrenn_platform.control_plane.db.engine import make_engine, make_sessionmaker
from wrenn_platform.control_plane.db.models import HostToken
from wrenn_platform.control_plane.hosts.service import create_pending_host
from wrenn_platform.control_plane.security import sha256_hex

from .conftest import Env


async def _registration_token(database_url: str) -> str:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            _, token = await create_pending_host(db, created_by="tests")
            return token
    finally:
        await engine.dispose()


async def _stored_hashes(database_url: str) -> set[str]:
    from sqlalchemy import select

    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            return set((await db.execute(select(HostToken.token_hash))).scalars().all())
    finally:
        await engine.dispose()


async def test_register_heartbeat_refresh(env: Env) -> None:
    token = await _registration_token(env.database_url)
    async with env.client() as c:
        spec = {"arch": "x86_64", "cpu_cores": 4, "memory_mb": 8192, "disk_gb": 100, "address": "10.9.9.9:7070"}
        assert (await c.post("/v1/hosts/register", json={"token": "nope", **spec})).status_code == 401
        assert (await c.post("/v1/hosts/register", json={"token": token})).status_code == 400  # no address
        r = await c.post("/v1/hosts/register", json={"token": token, **spec})
        assert r.status_code == 201, r.text
        body = r.json()
        host = body["host"]
        assert host["id"].startswith("host-") and host["status"] == "online" and host["type"] == "regular"
        assert (host["cpu_cores"], host["memory_mb"], host["address"]) == (4, 8192, "10.9.9.9:7070")
        jwt, refresh = body["token"], body["refresh_token"]
        # single use, and only hashes at rest
        assert (await c.post("/v1/hosts/register", json={"token": token, **spec})).status_code == 401
        hashes = await _stored_hashes(env.database_url)
        assert sha256_hex(refresh) in hashes and refresh not in hashes and token not in hashes

        hb = f"/v1/hosts/{host['id']}/heartbeat"
        assert (await c.post(hb, headers={"X-Host-Token": jwt})).status_code == 204
        assert (await c.post(hb)).status_code == 401
        assert (await c.post(hb, headers={"X-Host-Token": jwt + "x"})).status_code == 401
        other = await c.post("/v1/hosts/host-000000000000/heartbeat", headers={"X-Host-Token": jwt})
        assert other.status_code == 403 and other.json()["error"]["code"] == "forbidden"

        r = await c.post("/v1/hosts/auth/refresh", json={"refresh_token": refresh})
        assert r.status_code == 200, r.text
        assert r.json()["host"]["id"] == host["id"] and r.json()["refresh_token"] != refresh
        assert (await c.post(hb, headers={"X-Host-Token": r.json()["token"]})).status_code == 204
        assert (await c.post("/v1/hosts/auth/refresh", json={"refresh_token": refresh})).status_code == 401
        assert (await c.post("/v1/hosts/auth/refresh", json={"refresh_token": "x"})).status_code == 401

        ev = {"event": "sandbox.stopped", "sandbox_id": "cl-000000000000", "host_id": host["id"], "timestamp": 1}
        assert (await c.post("/v1/hosts/sandbox-events", json=ev)).status_code == 401
        assert (await c.post("/v1/hosts/sandbox-events", json=ev, headers={"X-Host-Token": jwt})).status_code == 204
        r = await c.post("/v1/hosts/sandbox-events", json={**ev, "host_id": "host-000000000000"},
                         headers={"X-Host-Token": jwt})
        assert r.status_code == 403
        r = await c.post("/v1/hosts/sandbox-events", json={"event": "x"}, headers={"X-Host-Token": jwt})
        assert r.status_code == 400
        r = await c.post("/v1/hosts/sandbox-events", json={**ev, "event": "sandbox.something_new"},
                         headers={"X-Host-Token": jwt})
        assert r.status_code == 204  # unknown events are accepted


async def test_another_host_cannot_touch_our_capsules(env: Env, api: httpx.AsyncClient, shared_capsule: str) -> None:
    token = await _registration_token(env.database_url)
    async with env.client() as c:
        r = await c.post("/v1/hosts/register", json={"token": token, "address": "10.9.9.8:7070"})
        host_id, jwt = r.json()["host"]["id"], r.json()["token"]
        ev = {"event": "sandbox.stopped", "sandbox_id": shared_capsule, "host_id": host_id}
        assert (await c.post("/v1/hosts/sandbox-events", json=ev, headers={"X-Host-Token": jwt})).status_code == 204
    await asyncio.sleep(0.2)
    assert (await api.get(f"/v1/capsules/{shared_capsule}")).json()["status"] == "running"
