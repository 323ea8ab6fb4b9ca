"""`/v1/admin/builds*` on real capsules: a recipe (a script file + shell steps, nothing downloaded)
becomes a team template whose new capsules have what it made; a failing step fails the build;
cancel stops a running build and destroys its capsule; a build whose worker died is failed."""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import timedelta
from typing import Any

import httpx

from wrenn_platform.control_plane.db.engine import make_engine, make_sessionmaker
from wrenn_platform.control_plane.db.models import TemplateBuild
from wrenn_platform.control_plane.db.types import utcnow

from ..capsules.conftest import Env, create_running, destroy, wait_status

BUILD_TIMEOUT_S = 90.0


async def _wait(admin: httpx.AsyncClient, build_id: str, done: Any, within: float = BUILD_TIMEOUT_S) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        body: dict[str, Any] = (await admin.get(f"/v1/admin/builds/{build_id}")).json()
        if done(body):
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)


async def _capsule_status(admin: httpx.AsyncClient, capsule_id: str) -> str:
    status: str = (await admin.get(f"/v1/admin/capsules/{capsule_id}")).json()["status"]
    return status


async def test_build_makes_a_template_with_what_the_recipe_made(env: Env, admin: httpx.AsyncClient,
                                                                other: httpx.AsyncClient) -> None:
    name = f"built-{secrets.token_hex(3)}"
    recipe = {
        "name": name, "team_id": env.b.team_id,
        "files": [{"path": "/usr/local/bin/hello-wrenn", "content": "#!/bin/sh\necho \"hello from $1\"\n",
                   "mode": "0755"}],
        "steps": ["mkdir -p /opt/built && echo 42 > /opt/built/answer", "hello-wrenn build"],
    }
    r = await admin.post("/v1/admin/builds", json=recipe)
    assert r.status_code == 202, r.text
    queued = r.json()
    assert queued["status"] in ("queued", "running") and queued["files"] == ["/usr/local/bin/hello-wrenn"]
    dup = await admin.post("/v1/admin/builds", json=recipe)
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "already_exists"

    build = await _wait(admin, queued["id"], lambda b: b["status"] not in ("queued", "running"))
    assert build["status"] == "succeeded", (build["error"], build["logs"])
    assert "$ hello-wrenn build\nhello from build\n" in build["logs"] and build["finished_at"] and build["capsule_id"]
    assert queued["id"] in [b["id"] for b in (await admin.get("/v1/admin/builds")).json()]
    assert await _capsule_status(admin, build["capsule_id"]) in ("stopping", "stopped")

    assert name in [t["name"] for t in (await other.get("/v1/snapshots")).json()]  # team B's template
    cap = await create_running(other, template=name)
    try:
        r = await other.post(f"/v1/capsules/{cap['id']}/exec", json={
            "cmd": "sh", "args": ["-c", "hello-wrenn capsule && cat /opt/built/answer"]})
        assert r.json()["stdout"] == "hello from capsule\n42\n", r.text
    finally:
        await destroy(other, cap["id"])
    assert (await other.delete(f"/v1/snapshots/{name}")).status_code == 204


async def test_failing_step_fails_the_build(env: Env, admin: httpx.AsyncClient,
                                            non_admin: httpx.AsyncClient) -> None:
    name = f"broken-{secrets.token_hex(3)}"
    r = await admin.post("/v1/admin/builds", json={"name": name, "team_id": env.b.team_id,
                                                   "steps": ["echo before", "exit 3", "echo never"]})
    assert r.status_code == 202, r.text
    build = await _wait(admin, r.json()["id"], lambda b: b["status"] not in ("queued", "running"))
    assert build["status"] == "failed" and "exited with 3" in build["error"], build
    assert "before" in build["logs"] and "never" not in build["logs"].replace("echo never", "")
    assert name not in [t["name"] for t in (await admin.get("/v1/admin/templates")).json()]
    assert await _capsule_status(admin, build["capsule_id"]) in ("stopping", "stopped")

    for bad in ({"name": "Bad Name"}, {"name": "x", "files": [{"path": "relative", "content": ""}]},
                {"name": "x", "team_id": "team-000000000000"}, {"name": "minimal"}):
        assert (await admin.post("/v1/admin/builds", json=bad)).status_code in (400, 409), bad
    assert (await admin.get("/v1/admin/builds/bld-000000000000")).status_code == 404
    for call in (non_admin.get("/v1/admin/builds"), non_admin.post("/v1/admin/builds", json={"name": "x"}),
                 non_admin.get(f"/v1/admin/builds/{build['id']}"),
                 non_admin.post(f"/v1/admin/builds/{build['id']}/cancel")):
        assert (await call).status_code == 403


async def test_cancel_stops_a_running_build(env: Env, admin: httpx.AsyncClient) -> None:
    name = f"cancelled-{secrets.token_hex(3)}"
    # team B's, like every build here: the server's teardown destroys whatever a failed test left
    r = await admin.post("/v1/admin/builds", json={"name": name, "team_id": env.b.team_id,
                                                   "steps": ["echo started; sleep 600"]})
    assert r.status_code == 202, r.text
    build_id = r.json()["id"]
    running = await _wait(admin, build_id, lambda b: "$ echo started; sleep 600" in b["logs"])
    assert running["status"] == "running" and running["capsule_id"]
    assert await _capsule_status(admin, running["capsule_id"]) == "running"

    assert (await admin.post(f"/v1/admin/builds/{build_id}/cancel")).status_code == 204
    deadline = time.monotonic() + 30
    while await _capsule_status(admin, running["capsule_id"]) != "stopped":
        assert time.monotonic() < deadline, "the cancelled build's capsule was not destroyed"
        await asyncio.sleep(0.1)
    build = (await admin.get(f"/v1/admin/builds/{build_id}")).json()
    assert build["status"] == "cancelled" and build["finished_at"], build
    assert name not in [t["name"] for t in (await admin.get("/v1/admin/templates")).json()]
    r = await admin.post(f"/v1/admin/builds/{build_id}/cancel")
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"


async def test_a_build_whose_worker_died_is_failed_and_its_capsule_destroyed(env: Env, admin: httpx.AsyncClient,
                                                                             other: httpx.AsyncClient) -> None:
    cap = await create_running(other)
    engine = make_engine(env.database_url)
    try:
        async with make_sessionmaker(engine)() as db:  # what a replica that crashed mid-build leaves
            build = TemplateBuild(team_id=env.b.team_id, name=f"orphan-{secrets.token_hex(3)}", status="running",
                                  capsule_id=cap["id"], recipe={"steps": ["sleep 600"]},
                                  started_at=utcnow() - timedelta(minutes=5),
                                  lease_until=utcnow() - timedelta(seconds=1))
            db.add(build)
            await db.commit()
            build_id = build.id
    finally:
        await engine.dispose()
    failed = await _wait(admin, build_id, lambda b: b["status"] != "running", within=30)
    assert failed["status"] == "failed" and "interrupted" in failed["error"], failed
    await wait_status(other, cap["id"], "stopped")
