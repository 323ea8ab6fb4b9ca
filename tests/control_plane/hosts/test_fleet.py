"""Fleet behaviour over the hosts API (SQLite and PostgreSQL): placement (BYOC, draining, free
memory) decided by the scheduler among hosts that joined through the API, and host status from
missed heartbeats (online → unreachable → offline → online) with host.up/host.down and the
capsules of a lost host made `missing`. Hosts here have no agent: placement and status need none."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidTag
from fastapi import FastAPI
from sqlalchemy import select, update
from typer.testing import CliRunner

from wrenn_platform.agent_link.auth import key_from_registration_token
from wrenn_platform.cli.main import app as cli
from wrenn_platform.control_plane.capsules.scheduler import pick_host
from wrenn_platform.control_plane.db.models import Capsule, Event, Host
from wrenn_platform.control_plane.db.types import utcnow
from wrenn_platform.control_plane.errors import ApiError
from wrenn_platform.control_plane.hosts import agent_keys
from wrenn_platform.control_plane.hosts.fleet import HOST_LOST, mark_stale_hosts, set_draining

from ..conftest import LoggedInUser, UserFactory

FRESH_S = 30.0


def _at(event: Event, key: str, sub: str) -> str:
    value = event.payload.get(key)
    return str(value.get(sub)) if isinstance(value, dict) else ""


async def _join(admin: LoggedInUser, client: httpx.AsyncClient, memory_mb: int,
                **body: Any) -> tuple[str, str]:
    """A host created through the API and registered with its token: (host id, host JWT)."""
    r = await admin.client.post("/v1/hosts", json={"type": "regular", **body})
    assert r.status_code == 201, r.text
    joined = await client.post("/v1/hosts/register", json={
        "token": r.json()["registration_token"], "arch": "x86_64", "cpu_cores": 2, "memory_mb": memory_mb,
        "disk_gb": 20, "address": "127.0.0.1:1"})
    assert joined.status_code == 201, joined.text
    return joined.json()["host"]["id"], joined.json()["token"]


async def _pick(app: FastAPI, team_id: str, hosts: set[str], memory_mb: int = 512,
                prefer: set[str] | None = None) -> str:
    async with app.state.sessionmaker() as db:
        return await pick_host(db, hosts, FRESH_S, team_id=team_id, memory_mb=memory_mb, prefer=prefer)


async def _place(app: FastAPI, team_id: str, host_id: str, memory_mb: int, status: str = "running") -> str:
    async with app.state.sessionmaker() as db:
        capsule = Capsule(team_id=team_id, host_id=host_id, status=status, template="minimal", vcpus=1,
                          memory_mb=memory_mb, disk_size_mb=1024, timeout_sec=0, labels={})
        db.add(capsule)
        await db.commit()
        return capsule.id


async def test_byoc_hosts_serve_only_their_team(app: FastAPI, make_user: UserFactory,
                                                client: httpx.AsyncClient) -> None:
    admin, byoc, plain = await make_user(admin=True), await make_user(), await make_user()
    assert (await admin.client.put(f"/v1/admin/teams/{byoc.team_id}/byoc", json={"byoc": True})).status_code == 204
    regular, _ = await _join(admin, client, 4096)
    own, _ = await _join(admin, client, 2048, type="byoc", team_id=byoc.team_id)
    hosts = {regular, own}
    # The BYOC team goes to its own host even though the regular one has more memory free ...
    assert await _pick(app, byoc.team_id, hosts) == own
    # ... and to regular hosts when its own is full.
    await _place(app, byoc.team_id, own, 1800)
    assert await _pick(app, byoc.team_id, hosts) == regular
    # Another team never lands on the BYOC host, even when it is the only one with room.
    assert await _pick(app, plain.team_id, hosts, 256) == regular
    await _place(app, plain.team_id, regular, 4000)
    with pytest.raises(ApiError) as exc:
        await _pick(app, plain.team_id, hosts, 128)
    assert exc.value.code == "no_host_available"
    assert await _pick(app, byoc.team_id, hosts, 128) == own
    # A team whose BYOC was switched off no longer uses its BYOC host.
    assert (await admin.client.put(f"/v1/admin/teams/{byoc.team_id}/byoc", json={"byoc": False})).status_code == 204
    with pytest.raises(ApiError):
        await _pick(app, byoc.team_id, hosts, 128)


async def test_free_memory_and_draining_decide_placement(app: FastAPI, make_user: UserFactory,
                                                         client: httpx.AsyncClient) -> None:
    admin, user = await make_user(admin=True), await make_user()
    small, _ = await _join(admin, client, 2048)
    big, big_jwt = await _join(admin, client, 8192)
    hosts = {small, big}
    assert await _pick(app, user.team_id, hosts) == big
    await _place(app, user.team_id, big, 7000)
    assert await _pick(app, user.team_id, hosts) == small  # 2048 free vs 1192
    with pytest.raises(ApiError):
        await _pick(app, user.team_id, hosts, 4096)  # neither has 4096 MB free
    await _place(app, user.team_id, small, 1024)
    with pytest.raises(ApiError):
        await _pick(app, user.team_id, hosts, 1500)  # neither has 1500 MB free
    # Stopped capsules free their memory.
    async with app.state.sessionmaker() as db:
        await db.execute(update(Capsule).where(Capsule.host_id == big).values(status="stopped"))
        await db.commit()
    assert await _pick(app, user.team_id, hosts, 1500) == big

    # A draining host takes nothing new, keeps heartbeating as draining, and is back when undrained.
    async with app.state.sessionmaker() as db:
        assert (await set_draining(db, big, True)).status == "draining"
    assert (await admin.client.get(f"/v1/hosts/{big}")).json()["status"] == "draining"
    assert await _pick(app, user.team_id, hosts, 512) == small
    assert (await client.post(f"/v1/hosts/{big}/heartbeat", headers={"X-Host-Token": big_jwt})).status_code == 204
    assert (await admin.client.get(f"/v1/hosts/{big}")).json()["status"] == "draining"
    async with app.state.sessionmaker() as db:
        assert (await set_draining(db, big, False)).status == "online"
    assert await _pick(app, user.team_id, hosts, 1500) == big
    # Unknown and unreachable hosts are not candidates.
    with pytest.raises(ApiError):
        await _pick(app, user.team_id, set(), 128)


async def _events(app: FastAPI, host_id: str) -> list[str]:
    async with app.state.sessionmaker() as db:
        rows = (await db.execute(select(Event).order_by(Event.id))).scalars().all()
    return [e.event for e in rows if e.event.startswith("host.") and _at(e, "resource", "id") == host_id]


async def _age(app: FastAPI, host_id: str, seconds: float) -> None:
    async with app.state.sessionmaker() as db:
        await db.execute(update(Host).where(Host.id == host_id)
                         .values(last_heartbeat_at=utcnow() - timedelta(seconds=seconds)))
        await db.commit()


async def test_a_host_holding_a_warm_capsule_is_preferred_among_those_that_fit(
        app: FastAPI, make_user: UserFactory, client: httpx.AsyncClient) -> None:
    admin, user = await make_user(admin=True), await make_user()
    small, _ = await _join(admin, client, 2048)
    big, _ = await _join(admin, client, 8192)
    hosts = {small, big}
    assert await _pick(app, user.team_id, hosts) == big
    assert await _pick(app, user.team_id, hosts, prefer={small}) == small
    # ... but never one the capsule does not fit on.
    assert await _pick(app, user.team_id, hosts, 4096, prefer={small}) == big


async def test_missed_heartbeats_take_a_host_unreachable_then_offline(app: FastAPI, make_user: UserFactory,
                                                                      client: httpx.AsyncClient) -> None:
    admin, user = await make_user(admin=True), await make_user()
    host_id, jwt = await _join(admin, client, 4096)
    other_id, _ = await _join(admin, client, 4096)
    running = await _place(app, user.team_id, host_id, 512)
    paused = await _place(app, user.team_id, host_id, 512, status="paused")
    stopping = await _place(app, user.team_id, host_id, 512, status="stopping")
    elsewhere = await _place(app, user.team_id, other_id, 512)

    async def status() -> str:
        return str((await admin.client.get(f"/v1/hosts/{host_id}")).json()["status"])

    async def capsule_statuses() -> dict[str, str]:
        async with app.state.sessionmaker() as db:
            return {c.id: c.status for c in (await db.execute(select(Capsule))).scalars()}

    async def sweep() -> None:
        async with app.state.sessionmaker() as db:
            await mark_stale_hosts(db, 10, 60)

    await _age(app, host_id, 5)
    await sweep()
    assert await status() == "online"
    await _age(app, host_id, 20)
    await sweep()
    assert await status() == "unreachable"
    assert (await capsule_statuses())[running] == "running"  # not lost yet
    with pytest.raises(ApiError):
        await _pick(app, user.team_id, {host_id}, 128)
    await _age(app, host_id, 90)
    await sweep()
    assert await status() == "offline"
    got = await capsule_statuses()
    assert (got[running], got[paused], got[stopping], got[elsewhere]) == ("missing", "missing", "stopping", "running")
    async with app.state.sessionmaker() as db:
        lost = await db.get(Capsule, running)
        assert lost is not None and lost.error == HOST_LOST
    await sweep()  # idempotent: no second host.down
    assert await _events(app, host_id) == ["host.up", "host.down"]  # up: it registered

    assert (await client.post(f"/v1/hosts/{host_id}/heartbeat", headers={"X-Host-Token": jwt})).status_code == 204
    assert await status() == "online"
    assert await _events(app, host_id) == ["host.up", "host.down", "host.up"]
    assert await _pick(app, user.team_id, {host_id}, 128) == host_id


async def test_operators_drain_a_host_from_the_command_line(app: FastAPI, make_user: UserFactory,
                                                            client: httpx.AsyncClient) -> None:
    admin, user = await make_user(admin=True), await make_user()
    host_id, _ = await _join(admin, client, 4096)
    url = app.state.settings.resolved_database_url()

    async def drain(*extra: str) -> tuple[int, str]:
        result = await asyncio.to_thread(CliRunner().invoke, cli, ["admin", "host-drain", *extra,
                                                                   "--database-url", url])
        return result.exit_code, result.output

    assert await drain(host_id) == (0, f"host {host_id} is draining\n")
    with pytest.raises(ApiError):
        await _pick(app, user.team_id, {host_id}, 128)
    assert await drain(host_id, "--undo") == (0, f"host {host_id} is online\n")
    assert await _pick(app, user.team_id, {host_id}, 128) == host_id
    assert await drain(host_id, "--undo") == (0, f"host {host_id} is online\n")  # no change: no entry
    code, output = await drain("host-000000000000")
    assert code != 0 and "not found" in output
    # Both changes are in the platform audit log, made by the operator's command.
    entries = (await admin.client.get("/v1/admin/audit-logs", params={"limit": 200})).json()["entries"]
    assert [(e["action"], e["actor_type"], e["actor_name"], e["scope"]) for e in reversed(entries)
            if e["resource_id"] == host_id and e["action"] in ("drain", "undrain")] == [
        ("drain", "system", "wrenn admin", "platform"), ("undrain", "system", "wrenn admin", "platform")]


async def test_the_agent_key_is_derived_from_the_registration_token_and_sealed(
        app: FastAPI, make_user: UserFactory, client: httpx.AsyncClient) -> None:
    admin = await make_user(admin=True)
    r = await admin.client.post("/v1/hosts", json={"type": "regular"})
    host_id, token = r.json()["host"]["id"], r.json()["registration_token"]
    joined = await client.post("/v1/hosts/register", json={"token": token, "address": "127.0.0.1:1"})
    assert joined.status_code == 201 and "agent_key" not in joined.json()["host"]
    assert "agent_key" not in (await admin.client.get(f"/v1/hosts/{host_id}")).json()
    async with app.state.sessionmaker() as db:
        host = await db.get(Host, host_id)
    assert host is not None and host.agent_key
    key = key_from_registration_token(token)
    assert len(key) >= 32 and key.decode() not in host.agent_key
    settings = app.state.settings
    assert agent_keys.unseal(settings, host_id, host.agent_key) == key
    with pytest.raises(InvalidTag):  # bound to its host
        agent_keys.unseal(settings, "host-000000000000", host.agent_key)
