"""The operator's hosts API over HTTP (SQLite and PostgreSQL): create with a one-time registration
token (1 h, hashed at rest) and join with it, list/get visibility, BYOC rules, token regeneration,
delete with its 409 / force, tags."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from wrenn_platform.control_plane.db.models import AuditLog, Capsule, HostToken, TeamMember
from wrenn_platform.control_plane.db.types import utcnow
from wrenn_platform.control_plane.security import sha256_hex

from ..conftest import LoggedInUser, SessionFactory, UserFactory

SPECS = {"arch": "x86_64", "cpu_cores": 2, "memory_mb": 4096, "disk_gb": 20, "address": "127.0.0.1:1"}


async def _create(c: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await c.post("/v1/hosts", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def _register(c: httpx.AsyncClient, token: str) -> httpx.Response:
    return await c.post("/v1/hosts/register", json={"token": token, **SPECS})


async def _member(app: FastAPI, make_user: UserFactory, session_for: SessionFactory, team_id: str,
                  role: str) -> httpx.AsyncClient:
    user = await make_user()
    async with app.state.sessionmaker() as db:
        db.add(TeamMember(team_id=team_id, user_id=user.id, role=role))
        await db.commit()
    return await session_for(user.id, team_id)


async def _byoc_team(admin: LoggedInUser, owner: LoggedInUser) -> None:
    r = await admin.client.put(f"/v1/admin/teams/{owner.team_id}/byoc", json={"byoc": True})
    assert r.status_code == 204, r.text


async def test_admin_creates_a_regular_host_that_joins_with_its_token(app: FastAPI, make_user: UserFactory,
                                                                      client: httpx.AsyncClient) -> None:
    admin = await make_user(admin=True)
    created = await _create(admin.client, type="regular", provider="bare-metal", availability_zone="eu-west")
    host, token = created["host"], created["registration_token"]
    assert host["id"].startswith("host-") and host["status"] == "pending" and host["type"] == "regular"
    assert (host["team_id"], host["provider"], host["availability_zone"]) == (None, "bare-metal", "eu-west")
    assert host["created_by"] == admin.id and host["last_heartbeat_at"] is None
    async with app.state.sessionmaker() as db:
        row = (await db.execute(select(HostToken).where(HostToken.host_id == host["id"]))).scalar_one()
    assert row.token_hash == sha256_hex(token) and row.kind == "registration"
    assert row.expires_at - row.created_at == timedelta(hours=1)

    joined = await _register(client, token)
    assert joined.status_code == 201, joined.text
    assert joined.json()["host"]["id"] == host["id"] and joined.json()["host"]["status"] == "online"
    assert (await _register(client, token)).status_code == 401  # single use

    got = (await admin.client.get(f"/v1/hosts/{host['id']}")).json()
    assert got["status"] == "online" and got["cpu_cores"] == 2 and got["last_heartbeat_at"] is not None
    again = await admin.client.post(f"/v1/hosts/{host['id']}/token")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert host["id"] in [h["id"] for h in (await admin.client.get("/v1/hosts")).json()]


async def test_bad_requests_and_who_may_create(make_user: UserFactory, client: httpx.AsyncClient) -> None:
    admin, owner = await make_user(admin=True), await make_user()
    r = await owner.client.post("/v1/hosts", json={"type": "regular"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    for body in ({"type": "regular", "team_id": owner.team_id}, {"type": "byoc"}, {"type": "gpu"}, {}):
        r = await admin.client.post("/v1/hosts", json=body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", (body, r.text)
    r = await admin.client.post("/v1/hosts", json={"type": "byoc", "team_id": "team-000000000000"})
    assert r.status_code == 400
    # BYOC needs the team to have BYOC enabled, for its owner and for admins alike
    for c in (owner.client, admin.client):
        r = await c.post("/v1/hosts", json={"type": "byoc", "team_id": owner.team_id})
        assert r.status_code == 403, r.text
    assert (await owner.client.get("/v1/hosts")).json() == []
    assert (await client.get("/v1/hosts")).status_code == 401


async def test_byoc_hosts_belong_to_their_team(app: FastAPI, make_user: UserFactory,
                                               session_for: SessionFactory) -> None:
    admin, owner, stranger = await make_user(admin=True), await make_user(), await make_user()
    await _byoc_team(admin, owner)
    await _byoc_team(admin, stranger)
    member = await _member(app, make_user, session_for, owner.team_id, "member")
    team_admin = await _member(app, make_user, session_for, owner.team_id, "admin")

    host = (await _create(owner.client, type="byoc", team_id=owner.team_id))["host"]
    assert host["type"] == "byoc" and host["team_id"] == owner.team_id and host["created_by"] == owner.id
    regular = (await _create(admin.client, type="regular"))["host"]
    # only the owner (or a platform admin) creates; a stranger cannot create for another team
    for c in (member, team_admin, stranger.client):
        assert (await c.post("/v1/hosts", json={"type": "byoc", "team_id": owner.team_id})).status_code == 403

    for c in (owner.client, member, team_admin):
        assert [h["id"] for h in (await c.get("/v1/hosts")).json()] == [host["id"]]
        assert (await c.get(f"/v1/hosts/{host['id']}")).status_code == 200
        assert (await c.get(f"/v1/hosts/{regular['id']}")).status_code == 404
    assert (await stranger.client.get("/v1/hosts")).json() == []
    r = await stranger.client.get(f"/v1/hosts/{host['id']}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert {host["id"], regular["id"]} <= {h["id"] for h in (await admin.client.get("/v1/hosts")).json()}
    assert (await admin.client.get("/v1/hosts/host-000000000000")).status_code == 404

    # token: owner yes, member no; preview and delete: owner and team admin, not member
    assert (await member.post(f"/v1/hosts/{host['id']}/token")).status_code == 403
    assert (await owner.client.post(f"/v1/hosts/{host['id']}/token")).status_code == 201
    assert (await member.get(f"/v1/hosts/{host['id']}/delete-preview")).status_code == 403
    assert (await member.delete(f"/v1/hosts/{host['id']}")).status_code == 403
    assert (await owner.client.delete(f"/v1/hosts/{regular['id']}")).status_code == 404
    preview = await team_admin.get(f"/v1/hosts/{host['id']}/delete-preview")
    assert preview.status_code == 200, preview.text
    assert preview.json()["host"]["id"] == host["id"] and preview.json()["sandbox_ids"] == []
    assert (await team_admin.delete(f"/v1/hosts/{host['id']}")).status_code == 204
    assert (await owner.client.get(f"/v1/hosts/{host['id']}")).status_code == 404


async def test_registration_token_expires_and_regenerates(app: FastAPI, make_user: UserFactory,
                                                          client: httpx.AsyncClient) -> None:
    admin = await make_user(admin=True)
    created = await _create(admin.client, type="regular")
    host_id, first = created["host"]["id"], created["registration_token"]
    async with app.state.sessionmaker() as db:  # an hour and a second later
        await db.execute(update(HostToken).where(HostToken.host_id == host_id)
                         .values(expires_at=utcnow() - timedelta(seconds=1)))
        await db.commit()
    r = await _register(client, first)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"

    second = (await admin.client.post(f"/v1/hosts/{host_id}/token")).json()
    assert second["host"]["id"] == host_id and second["host"]["status"] == "pending"
    third = (await admin.client.post(f"/v1/hosts/{host_id}/token")).json()["registration_token"]
    assert len({first, second["registration_token"], third}) == 3
    assert (await _register(client, second["registration_token"])).status_code == 401  # voided by the third
    assert (await _register(client, third)).status_code == 201
    async with app.state.sessionmaker() as db:
        actions = (await db.execute(select(AuditLog.action).where(AuditLog.resource_id == host_id))).scalars().all()
    assert sorted(actions).count("regenerate_token") == 2
    assert (await admin.client.post("/v1/hosts/host-000000000000/token")).status_code == 404


async def test_delete_refuses_with_capsules_unless_forced(app: FastAPI, make_user: UserFactory,
                                                          client: httpx.AsyncClient) -> None:
    admin, tenant = await make_user(admin=True), await make_user()
    created = await _create(admin.client, type="regular")
    host_id = created["host"]["id"]
    joined = (await _register(client, created["registration_token"])).json()
    async with app.state.sessionmaker() as db:
        running = Capsule(team_id=tenant.team_id, host_id=host_id, status="running")
        paused = Capsule(team_id=tenant.team_id, host_id=host_id, status="paused")
        gone = Capsule(team_id=tenant.team_id, host_id=host_id, status="stopped")
        db.add_all([running, paused, gone])
        await db.commit()
        held = sorted([running.id, paused.id])

    preview = (await admin.client.get(f"/v1/hosts/{host_id}/delete-preview")).json()
    assert sorted(preview["sandbox_ids"]) == held and preview["host"]["id"] == host_id
    r = await admin.client.delete(f"/v1/hosts/{host_id}")
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "host_has_sandboxes" and sorted(error["sandbox_ids"]) == held
    assert (await admin.client.get(f"/v1/hosts/{host_id}")).status_code == 200

    # The host's agent is unreachable from here: the capsules are recorded destroyed with the host.
    r = await admin.client.delete(f"/v1/hosts/{host_id}", params={"force": "true"})
    assert r.status_code == 204, r.text
    assert (await admin.client.get(f"/v1/hosts/{host_id}")).status_code == 404
    for capsule_id in held:
        body = (await tenant.client.get(f"/v1/capsules/{capsule_id}")).json()
        assert body["status"] == "stopped", body
    heartbeat = await client.post(f"/v1/hosts/{host_id}/heartbeat", headers={"X-Host-Token": joined["token"]})
    assert heartbeat.status_code == 401
    refresh = await client.post("/v1/hosts/auth/refresh", json={"refresh_token": joined["refresh_token"]})
    assert refresh.status_code == 401


async def test_tags(app: FastAPI, make_user: UserFactory, session_for: SessionFactory) -> None:
    admin, owner = await make_user(admin=True), await make_user()
    await _byoc_team(admin, owner)
    member = await _member(app, make_user, session_for, owner.team_id, "member")
    host_id = (await _create(owner.client, type="byoc", team_id=owner.team_id))["host"]["id"]
    tags = f"/v1/hosts/{host_id}/tags"

    assert (await owner.client.get(tags)).json() == []
    for tag in ("gpu", "zone:eu-west", "gpu"):
        r = await owner.client.post(tags, json={"tag": tag})
        assert r.status_code == 204, r.text
    assert (await admin.client.post(tags, json={"tag": "arm64"})).status_code == 204
    assert (await member.get(tags)).json() == ["arm64", "gpu", "zone:eu-west"]
    assert (await member.post(tags, json={"tag": "x"})).status_code == 403
    assert (await member.delete(f"{tags}/gpu")).status_code == 403
    for bad in ("", "a b", "a/b", "x" * 65):
        assert (await owner.client.post(tags, json={"tag": bad})).status_code == 400, bad
    assert (await owner.client.delete(f"{tags}/gpu")).status_code == 204
    r = await owner.client.delete(f"{tags}/gpu")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert (await owner.client.get(tags)).json() == ["arm64", "zone:eu-west"]
    assert (await owner.client.post("/v1/hosts/host-000000000000/tags", json={"tag": "x"})).status_code == 404
    assert (await admin.client.get("/v1/hosts/host-000000000000/tags")).status_code == 404
    # the tags go with the host
    assert (await owner.client.delete(f"/v1/hosts/{host_id}")).status_code == 204
    assert (await admin.client.get(tags)).status_code == 404
    async with app.state.sessionmaker() as db:
        audited = (await db.execute(select(AuditLog.action, AuditLog.actor_id, AuditLog.metadata_)
                                    .where(AuditLog.resource_id == host_id).order_by(AuditLog.created_at))).all()
    assert [(a, m) for a, _, m in audited if a.endswith("_tag")] == [
        ("add_tag", {"tag": "gpu"}), ("add_tag", {"tag": "zone:eu-west"}), ("add_tag", {"tag": "arm64"}),
        ("remove_tag", {"tag": "gpu"})]
    assert ("create", owner.id) in [(a, who) for a, who, _ in audited]
    assert ("delete", owner.id) in [(a, who) for a, who, _ in audited]
