"""`/v1/admin/capsules*` on real capsules: a platform admin acts on team B's capsule through every
route kind; a non-admin (team A's owner) gets 403 on every one."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from ..capsules.conftest import Env, Tenant, create_running, destroy, wait_status

TIMEOUT = 20


def _ws(env: Env, path: str, who: Tenant) -> Any:
    return connect(env.server.ws_url + path, additional_headers={"Cookie": f"wrenn_sid={who.session_id}"},
                   open_timeout=TIMEOUT)


async def _recv(ws: Any) -> dict[str, Any]:
    msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return msg


@pytest.fixture
async def b_capsule(other: httpx.AsyncClient) -> Any:
    """A running capsule of team B (over B's API key), destroyed after the test."""
    cap = await create_running(other)
    yield cap["id"]
    if (await other.get(f"/v1/capsules/{cap['id']}")).json()["status"] not in ("stopped", "stopping"):
        await other.delete(f"/v1/capsules/{cap['id']}")
    await wait_status(other, cap["id"], "stopped", "error", "missing")


async def test_admin_operates_another_teams_capsule(admin: httpx.AsyncClient, other: httpx.AsyncClient,
                                                    b_capsule: str) -> None:
    base = f"/v1/admin/capsules/{b_capsule}"
    assert b_capsule in [c["id"] for c in (await admin.get("/v1/admin/capsules")).json()]
    got = await admin.get(base)
    assert got.status_code == 200 and got.json()["status"] == "running", got.text

    r = await admin.post(f"{base}/exec", json={"cmd": "sh", "args": ["-c", "echo hi; exit 3"]})
    assert r.status_code == 200 and (r.json()["stdout"], r.json()["exit_code"]) == ("hi\n", 3), r.text
    tag = f"sleeper-{secrets.token_hex(3)}"
    r = await admin.post(f"{base}/exec", json={"cmd": "sleep", "args": ["600"], "background": True, "tag": tag})
    assert r.status_code == 202 and r.json()["sandbox_id"] == b_capsule, r.text
    procs = (await admin.get(f"{base}/processes")).json()["processes"]
    assert tag in [p["tag"] for p in procs]
    assert (await admin.delete(f"{base}/processes/{tag}", params={"signal": "SIGTERM"})).status_code == 204

    d = f"/tmp/admin-{secrets.token_hex(3)}"
    r = await admin.post(f"{base}/files/mkdir", json={"path": d})
    assert r.status_code == 200 and r.json()["entry"]["path"] == d, r.text
    r = await admin.post(f"{base}/files/write", files={"file": ("f.txt", b"from the admin\n")},
                         data={"path": f"{d}/f.txt"})
    assert r.status_code == 204, r.text
    listing = (await admin.post(f"{base}/files/list", json={"path": d})).json()
    assert [e["name"] for e in listing["entries"]] == ["f.txt"]
    assert (await admin.post(f"{base}/files/read", json={"path": f"{d}/f.txt"})).content == b"from the admin\n"
    # the tenant sees what the admin wrote: the same capsule
    r = await other.post(f"/v1/capsules/{b_capsule}/files/read", json={"path": f"{d}/f.txt"})
    assert r.content == b"from the admin\n"
    assert (await admin.post(f"{base}/files/remove", json={"path": d})).status_code == 204
    assert (await admin.post(f"{base}/files/read", json={"path": f"{d}/f.txt"})).status_code == 404

    r = await admin.get(f"{base}/metrics", params={"range": "5m"})
    assert r.status_code == 200, r.text
    assert (r.json()["sandbox_id"], r.json()["range"]) == (b_capsule, "5m") and isinstance(r.json()["points"], list)

    name = f"admin-snap-{secrets.token_hex(3)}"
    r = await admin.post(f"{base}/snapshot", json={"name": name})
    assert r.status_code == 201 and r.json()["name"] == name and r.json()["platform"] is False, r.text
    assert name in [t["name"] for t in (await other.get("/v1/snapshots")).json()]  # team B's template
    assert (await other.delete(f"/v1/snapshots/{name}")).status_code == 204

    r = await admin.delete(base)
    assert r.status_code == 204, r.text
    assert (await other.get(f"/v1/capsules/{b_capsule}")).json()["status"] == "stopped"
    assert (await admin.delete(base)).status_code == 204  # already destroyed: nothing left to do
    r = await admin.post(f"{base}/exec", json={"cmd": "true"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"


async def test_admin_creates_for_a_team(env: Env, admin: httpx.AsyncClient, other: httpx.AsyncClient) -> None:
    r = await admin.post("/v1/admin/capsules", json={"team_id": env.b.team_id, "memory_mb": 256})
    assert r.status_code == 201, r.text
    cap = r.json()
    assert cap["status"] == "running" and cap["memory_mb"] == 256
    try:
        assert cap["id"] in [c["id"] for c in (await other.get("/v1/capsules")).json()]
    finally:
        await destroy(other, cap["id"])
    r = await admin.post("/v1/admin/capsules", json={"team_id": "team-000000000000"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    assert (await admin.get("/v1/admin/capsules/cl-000000000000")).status_code == 404


async def test_admin_websockets(env: Env, admin_tenant: Tenant, b_capsule: str) -> None:
    async with _ws(env, f"/v1/admin/capsules/{b_capsule}/exec/stream", admin_tenant) as ws:
        await ws.send(json.dumps({"type": "start", "cmd": "sh", "args": ["-c", "echo streamed; exit 2"]}))
        messages = [await _recv(ws)]
        while messages[-1]["type"] != "exit":
            messages.append(await _recv(ws))
        assert messages[0]["type"] == "start" and messages[-1] == {"type": "exit", "exit_code": 2}
        assert "streamed" in "".join(m.get("data", "") for m in messages if m["type"] == "stdout")
    async with _ws(env, f"/v1/admin/capsules/{b_capsule}/pty", admin_tenant) as ws:
        await ws.send(json.dumps({"type": "start", "cmd": "/bin/sh", "cols": 80, "rows": 24}))
        assert (await _recv(ws))["type"] == "started"
    async with _ws(env, f"/v1/admin/capsules/{b_capsule}/processes/no-such-tag/stream", admin_tenant) as ws:
        assert (await _recv(ws))["type"] == "error"


async def test_non_admins_are_refused(env: Env, non_admin: httpx.AsyncClient, b_capsule: str) -> None:
    base = f"/v1/admin/capsules/{b_capsule}"
    calls = [
        non_admin.get("/v1/admin/capsules"), non_admin.post("/v1/admin/capsules", json={}),
        non_admin.get(base), non_admin.delete(base), non_admin.post(f"{base}/snapshot", json={"name": "x"}),
        non_admin.post(f"{base}/exec", json={"cmd": "true"}), non_admin.get(f"{base}/metrics"),
        non_admin.get(f"{base}/processes"), non_admin.delete(f"{base}/processes/1"),
        non_admin.post(f"{base}/files/list", json={"path": "/"}),
        non_admin.post(f"{base}/files/read", json={"path": "/etc/hostname"}),
        non_admin.post(f"{base}/files/mkdir", json={"path": "/tmp/x"}),
        non_admin.post(f"{base}/files/remove", json={"path": "/tmp/x"}),
        non_admin.post(f"{base}/files/write", files={"file": ("f", b"x")}, data={"path": "/tmp/f"}),
    ]
    for resp in await asyncio.gather(*calls):
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden", (resp.request.url, resp.text)
    async with env.client(env.b) as key_client:  # API keys are not admin sessions
        assert (await key_client.get(base)).status_code == 401
    for path in ("exec/stream", "pty", "processes/1/stream"):
        with pytest.raises(InvalidStatus) as denied:
            async with _ws(env, f"{base}/{path}", env.a):
                pass
        assert denied.value.response.status_code == 403
