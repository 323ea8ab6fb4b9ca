"""`/v1/admin/templates*`: the platform's and every team's templates; deleting a team's snapshot
(qualified by team when the name is taken in several), never a platform template."""

from __future__ import annotations

import secrets

import httpx

from ..capsules.conftest import Env, create_running, destroy


async def test_list_and_delete_templates(env: Env, admin: httpx.AsyncClient, non_admin: httpx.AsyncClient,
                                         api: httpx.AsyncClient, other: httpx.AsyncClient) -> None:
    name = f"dup-{secrets.token_hex(3)}"
    caps = [(api, await create_running(api)), (other, await create_running(other))]
    try:
        for c, cap in caps:
            r = await c.post("/v1/snapshots", json={"sandbox_id": cap["id"], "name": name})
            assert r.status_code == 201, r.text
    finally:
        for c, cap in caps:
            await destroy(c, cap["id"])

    listed = (await admin.get("/v1/admin/templates")).json()
    platform = [t for t in listed if t["platform"]]
    assert "minimal" in [t["name"] for t in platform] and all(t["type"] == "base" for t in platform)
    teams = sorted(t["metadata"]["team_id"] for t in listed if t["name"] == name)
    assert teams == sorted([env.a.team_id, env.b.team_id])
    assert (await non_admin.get("/v1/admin/templates")).status_code == 403
    assert (await non_admin.delete(f"/v1/admin/templates/{name}")).status_code == 403

    r = await admin.delete("/v1/admin/templates/minimal")
    assert r.status_code == 403 and "platform template" in r.json()["error"]["message"]
    assert (await admin.delete(f"/v1/admin/templates/nope-{name}")).status_code == 404
    r = await admin.delete(f"/v1/admin/templates/{name}")
    assert r.status_code == 409 and env.b.team_id in r.json()["error"]["message"]

    assert (await admin.delete(f"/v1/admin/templates/{env.b.team_id}:{name}")).status_code == 204
    assert name not in [t["name"] for t in (await other.get("/v1/snapshots")).json()]
    assert name in [t["name"] for t in (await api.get("/v1/snapshots")).json()]
    assert (await admin.delete(f"/v1/admin/templates/{name}")).status_code == 204  # now only team A's
    assert name not in [t["name"] for t in (await api.get("/v1/snapshots")).json()]
    assert name not in [t["name"] for t in (await admin.get("/v1/admin/templates")).json()]
