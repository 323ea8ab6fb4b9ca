"""`POST /v1/admin/capsules/{id}/snapshot` through the shared snapshot service: the tenant's refusals
(400 a name the tenant could not use, 404 no capsule, 409 name taken in the capsule's team, 409 not
running) and an audit entry in the capsule's team that names the admin."""

from __future__ import annotations

import secrets

import httpx

from ..capsules.conftest import create_running, destroy


async def test_admin_snapshot_refusals_and_audit(admin: httpx.AsyncClient, other: httpx.AsyncClient) -> None:
    r = await admin.post("/v1/admin/capsules/cl-000000000000/snapshot", json={"name": "nothing"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text

    capsule = (await create_running(other))["id"]
    base = f"/v1/admin/capsules/{capsule}"
    name = f"admin-snap-{secrets.token_hex(3)}"
    try:
        for bad in ("Bad Name", "x" * 64):  # the tenant's name rule: a clear 400, never a 500
            r = await admin.post(f"{base}/snapshot", json={"name": bad})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", r.text
        assert (await admin.post(f"{base}/snapshot", json={"name": name})).status_code == 201
        r = await admin.post(f"{base}/snapshot", json={"name": name})  # taken in team B
        assert r.status_code == 409 and r.json()["error"]["code"] == "already_exists", r.text
    finally:
        await destroy(other, capsule)

    entries = (await admin.get("/v1/admin/audit-logs", params={"limit": 200})).json()["entries"]
    created = [e for e in entries if (e["resource_type"], e["resource_id"]) == ("template", name)]
    assert [(e["action"], e["status"], e["actor_type"], e["actor_name"], e["scope"]) for e in created] == [
        ("create", "success", "user", "Admin", "team")], created
    assert created[0]["metadata"] == {"source_capsule_id": capsule}

    r = await admin.post(f"{base}/snapshot", json={"name": f"{name}-2"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict", r.text
    assert (await other.delete(f"/v1/snapshots/{name}")).status_code == 204
