"""Live snapshots: the source keeps running, names are immutable, listing with `type` and
`platform`, capsules from a snapshot start with its files, deletion."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from .conftest import Env, wait_status


async def test_snapshot_lifecycle(env: Env, api: httpx.AsyncClient, other: httpx.AsyncClient,
                                  capsules: Any) -> None:
    source = await capsules(vcpus=1, memory_mb=256)
    cid = source["id"]
    marker = secrets.token_hex(8)
    r = await api.post(f"/v1/capsules/{cid}/exec",
                       json={"cmd": "sh", "args": ["-c", f"echo {marker} > /home/user/marker.txt"]})
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
    name = f"snap-{secrets.token_hex(3)}"

    r = await api.post("/v1/snapshots", json={"sandbox_id": cid, "name": name})
    assert r.status_code == 201, r.text
    tpl = r.json()
    assert (tpl["name"], tpl["type"], tpl["platform"]) == (name, "snapshot", False)
    assert tpl["vcpus"] == 1 and tpl["memory_mb"] == 256 and tpl["size_bytes"] >= 0 and tpl["created_at"]
    # live: the source keeps running and answering
    assert (await api.get(f"/v1/capsules/{cid}")).json()["status"] == "running"
    assert (await api.post(f"/v1/capsules/{cid}/exec", json={"cmd": "true"})).json()["exit_code"] == 0

    # immutable names
    r = await api.post("/v1/snapshots", json={"sandbox_id": cid, "name": name})
    assert r.status_code == 409 and r.json()["error"]["code"] == "already_exists"
    r = await api.post("/v1/snapshots", json={"sandbox_id": cid, "name": "minimal"})
    assert r.status_code == 409
    r = await api.post("/v1/snapshots", json={"sandbox_id": cid, "name": "Bad Name!"})
    assert r.status_code == 400

    # listing: platform base templates and the team's snapshots; the type filter
    listed = {t["name"]: t for t in (await api.get("/v1/snapshots")).json()}
    assert listed["minimal"]["platform"] is True and listed["minimal"]["type"] == "base"
    assert listed[name]["platform"] is False
    assert {t["type"] for t in (await api.get("/v1/snapshots", params={"type": "snapshot"})).json()} == {"snapshot"}
    bases = (await api.get("/v1/snapshots", params={"type": "base"})).json()
    assert {t["type"] for t in bases} == {"base"} and "minimal" in {t["name"] for t in bases}
    assert (await api.get("/v1/snapshots", params={"type": "other"})).status_code == 400
    assert name not in {t["name"] for t in (await other.get("/v1/snapshots")).json()}

    # a capsule from the snapshot has its files
    clone = await capsules(template=name)
    assert clone["template"] == name
    r = await api.post(f"/v1/capsules/{clone['id']}/exec", json={"cmd": "cat", "args": ["/home/user/marker.txt"]})
    assert r.json()["stdout"] == f"{marker}\n", r.text
    # another team cannot start from it
    r = await other.post("/v1/capsules", json={"template": name})
    assert r.status_code == 202, r.text
    failed = await wait_status(other, r.json()["id"], "error")
    assert failed["status"] == "error"
    await other.delete(f"/v1/capsules/{failed['id']}")
    await wait_status(other, failed["id"], "stopped")

    # snapshot of a capsule that is not running: 409
    assert (await api.post(f"/v1/capsules/{clone['id']}/pause")).status_code == 202
    await wait_status(api, clone["id"], "paused")
    r = await api.post("/v1/snapshots", json={"sandbox_id": clone["id"]})
    assert r.status_code == 409, r.text

    # delete (another team: 404), then the name is gone; unknown: 404
    assert (await other.delete(f"/v1/snapshots/{name}")).status_code == 404
    await api.delete(f"/v1/capsules/{clone['id']}")
    await wait_status(api, clone["id"], "stopped")
    r = await api.delete(f"/v1/snapshots/{name}")
    assert r.status_code == 204, r.text
    assert name not in {t["name"] for t in (await api.get("/v1/snapshots")).json()}
    assert (await api.delete(f"/v1/snapshots/{name}")).status_code == 404
    assert (await api.delete("/v1/snapshots/minimal")).status_code == 404


async def test_snapshot_name_generated(api: httpx.AsyncClient, shared_capsule: str) -> None:
    r = await api.post("/v1/snapshots", json={"sandbox_id": shared_capsule})
    assert r.status_code == 201, r.text
    name = r.json()["name"]
    assert name.startswith("snap-")
    assert (await api.delete(f"/v1/snapshots/{name}")).status_code == 204
