"""Create, list, get, pause, resume, ping, destroy through the API, with the state machine's 409s."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from .conftest import Env, create_running, destroy, wait_status


async def test_create_runs_and_destroy_keeps_the_record(api: httpx.AsyncClient) -> None:
    resp = await api.post("/v1/capsules", json={"vcpus": 2, "memory_mb": 256, "disk_size_mb": 512,
                                                "timeout_sec": 5, "metadata": {"owner": "tests"}})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "starting"
    assert body["id"].startswith("cl-")
    assert (body["template"], body["vcpus"], body["memory_mb"], body["disk_size_mb"]) == ("minimal", 2, 256, 512)
    assert body["timeout_sec"] == 60  # positive values below 60 are clamped to 60
    cap = await wait_status(api, body["id"], "running")  # how fast: bench/api_bench.py, not a test
    assert cap["guest_ip"] and cap["host_ip"] and cap["started_at"]
    assert cap["metadata"]["owner"] == "tests"
    listed = {c["id"]: c for c in (await api.get("/v1/capsules")).json()}
    assert listed[body["id"]]["status"] == "running"

    resp = await api.post(f"/v1/capsules/{body['id']}/exec", json={"cmd": "nproc"})
    assert resp.status_code == 200, resp.text

    stopped = await destroy(api, body["id"])
    assert stopped["status"] == "stopped"
    assert (await api.get(f"/v1/capsules/{body['id']}")).json()["status"] == "stopped"
    again = await api.delete(f"/v1/capsules/{body['id']}")  # idempotent: the capsule as it is
    assert again.status_code == 202, again.text
    assert (again.json()["id"], again.json()["status"]) == (body["id"], "stopped")
    exec_ = await api.post(f"/v1/capsules/{body['id']}/exec", json={"cmd": "true"})
    assert exec_.status_code == 409


async def test_pause_resume_and_wrong_state_409s(api: httpx.AsyncClient, capsules: Any) -> None:
    cap = await capsules()
    cid = cap["id"]
    assert (await api.post(f"/v1/capsules/{cid}/resume")).status_code == 409  # running, not paused
    resp = await api.post(f"/v1/capsules/{cid}/pause")
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "paused"  # a freeze settles well within the answer's wait
    for method, path, body in [
        ("post", "pause", None), ("post", "ping", None), ("post", "exec", {"cmd": "true"}),
        ("post", "exec", {"cmd": "sleep", "args": ["1"], "background": True}), ("get", "processes", None),
        ("delete", "processes/1", None), ("post", "files/list", {"path": "/"}), ("post", "files/read", {"path": "/x"}),
        ("post", "files/stream/read", {"path": "/x"}), ("post", "files/mkdir", {"path": "/tmp/d"}),
        ("post", "files/remove", {"path": "/tmp/d"}), ("post", "files/write", "multipart"),
        ("post", "files/stream/write", "multipart"),
    ]:
        if body == "multipart":
            r = await api.post(f"/v1/capsules/{cid}/{path}", data={"path": "/tmp/f"}, files={"file": ("f", b"1")})
        else:
            r = await api.request(method.upper(), f"/v1/capsules/{cid}/{path}", json=body)
        assert r.status_code == 409, (path, r.text)
        assert r.json()["error"]["code"] == "conflict" and "paused" in r.json()["error"]["message"]
    r = await api.post("/v1/snapshots", json={"sandbox_id": cid})
    assert r.status_code == 409, r.text
    resp = await api.post(f"/v1/capsules/{cid}/resume")
    assert resp.status_code == 202
    resumed = resp.json()
    assert resumed["status"] == "running"
    assert (resumed["guest_ip"], resumed["host_ip"]) == (cap["guest_ip"], cap["host_ip"])  # the slot is kept
    resp = await api.post(f"/v1/capsules/{cid}/exec", json={"cmd": "echo", "args": ["back"]})
    assert resp.json()["stdout"] == "back\n"


async def test_destroy_while_starting_waits_for_the_create(api: httpx.AsyncClient) -> None:
    resp = await api.post("/v1/capsules", json={})
    cid = resp.json()["id"]
    gone = await api.delete(f"/v1/capsules/{cid}")
    assert gone.status_code == 202
    assert (await wait_status(api, cid, "stopped"))["status"] == "stopped"


async def test_ping_resets_inactivity(api: httpx.AsyncClient, shared_capsule: str) -> None:
    before = (await api.get(f"/v1/capsules/{shared_capsule}")).json()["last_active_at"]
    await asyncio.sleep(0.01)
    resp = await api.post(f"/v1/capsules/{shared_capsule}/ping")
    assert resp.status_code == 204
    after = (await api.get(f"/v1/capsules/{shared_capsule}")).json()["last_active_at"]
    assert after and (before is None or after > before)


async def test_validation_and_unknown(api: httpx.AsyncClient) -> None:
    for body in ({"vcpus": 0}, {"memory_mb": "lots"}, {"timeout_sec": -1}):
        r = await api.post("/v1/capsules", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "invalid_request"
    assert (await api.post("/v1/capsules", content=b"{not json", headers={"Content-Type": "application/json"})
            ).status_code == 400
    for method, path in [("GET", ""), ("DELETE", ""), ("POST", "/pause"), ("POST", "/resume"), ("POST", "/ping"),
                         ("GET", "/metrics"), ("GET", "/processes")]:
        r = await api.request(method, f"/v1/capsules/cl-000000000000{path}")
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "not_found"


async def test_unknown_template_ends_in_error_and_leaves_nothing(api: httpx.AsyncClient) -> None:
    resp = await api.post("/v1/capsules", json={"template": "no-such-template"})
    assert resp.status_code == 202
    cap = await wait_status(api, resp.json()["id"], "error")
    assert cap["status"] == "error"
    assert (await api.delete(f"/v1/capsules/{cap['id']}")).status_code == 202
    await wait_status(api, cap["id"], "stopped")


async def test_create_then_first_exec(env: Env, api: httpx.AsyncClient) -> None:
    cap = await create_running(api)
    try:
        r = await api.post(f"/v1/capsules/{cap['id']}/exec", json={"cmd": "cat", "args": ["/etc/hostname"]})
        assert r.status_code == 200 and r.json()["exit_code"] == 0
    finally:
        await destroy(api, cap["id"])


async def test_deleting_a_team_destroys_its_capsules(env: Env) -> None:
    from .conftest import _make_tenant, capsule_status_in_db

    tenant = await _make_tenant(env.database_url, with_session=True)
    async with env.client(tenant) as api, env.session_client(tenant) as browser:
        cap = await create_running(api)
        r = await browser.delete(f"/v1/teams/{tenant.team_id}")
        assert r.status_code == 204, r.text
        assert (await api.get(f"/v1/capsules/{cap['id']}")).status_code == 401  # the team's keys stop working
    deadline = time.monotonic() + 20
    while (status := await capsule_status_in_db(env.database_url, cap["id"])) != "stopped":
        assert status == "stopping" and time.monotonic() < deadline, status
        await asyncio.sleep(0.1)
