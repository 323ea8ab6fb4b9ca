"""Templates that start a service: a build declares `start` (command + readiness check); the build
starts it before the snapshot; every capsule of the template is `running` only once its check passed,
with the service up: started again after a namespace restore, restored running from a microvm
snapshot (`tests/host_agent/microvm/test_capsule_api.py` runs the first test here on microvm). A
check that fails makes the capsule `error` with the check's output as the failure reason (audit
log), and fails a build outright."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx

from ..capsules.conftest import Env, create_running, destroy, wait_status
from .test_builds import _wait


async def _build(admin: httpx.AsyncClient, recipe: dict[str, Any]) -> dict[str, Any]:
    r = await admin.post("/v1/admin/builds", json=recipe)
    assert r.status_code == 202, r.text
    return await _wait(admin, r.json()["id"], lambda b: b["status"] not in ("queued", "running"))


async def _exec(client: httpx.AsyncClient, capsule_id: str, script: str) -> dict[str, Any]:
    r = await client.post(f"/v1/capsules/{capsule_id}/exec", json={"cmd": "sh", "args": ["-c", script]})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_every_capsule_of_the_template_runs_its_service_when_running(env: Env, admin: httpx.AsyncClient,
                                                                           api: httpx.AsyncClient) -> None:
    name = f"web-{secrets.token_hex(3)}"
    build = await _build(admin, {
        "name": name, "team_id": env.a.team_id,
        "files": [{"path": "/srv/www/index.html", "content": "served by the template\n"}],
        "steps": ["chown -R user:user /srv/www"],
        "start": {"cmd": "date +%s%N >> /srv/www/starts; cd /srv/www && exec python3 -m http.server 8000",
                  "user": "user", "ready": {"http_port": 8000, "http_path": "/index.html", "interval_sec": 0.1}},
    })
    assert build["status"] == "succeeded", (build["error"], build["logs"])
    assert "# starting the service as user: date +%s%N >> /srv/www/starts; cd /srv/www" in build["logs"]
    assert build["start"]["ready"]["http_port"] == 8000
    listed = {t["name"]: t for t in (await api.get("/v1/snapshots")).json()}
    assert listed[name]["metadata"]["start_cmd"].startswith("date +%s%N >> /srv/www/starts;"), listed[name]
    assert listed[name]["metadata"]["start_user"] == "user"
    snapshot = f"{name}-snap"
    try:
        cap = await create_running(api, template=name)
        # no wait: `running` means the check passed
        served = await _exec(api, cap["id"], "curl -sf http://127.0.0.1:8000/index.html; "
                                             "ps -o user= -p \"$(pgrep -f '^python3 -m http.server')\"; "
                                             "wc -l < /srv/www/starts")
        # A microvm snapshot (the build's) restores the service running: it started once, in the build.
        # A namespace snapshot keeps files, not processes: its capsules start the service again.
        in_memory = cap["metadata"]["runtime"] == "microvm"
        assert served["stdout"] == f"served by the template\nuser\n{1 if in_memory else 2}\n", served

        r = await api.post("/v1/snapshots", json={"sandbox_id": cap["id"], "name": snapshot})
        assert r.status_code in (200, 201), r.text
        await destroy(api, cap["id"])
        restored = await create_running(api, template=snapshot)  # it inherits the start command
        served = await _exec(api, restored["id"], "curl -sf http://127.0.0.1:8000/index.html; wc -l < /srv/www/starts")
        assert served["stdout"] == f"served by the template\n{1 if in_memory else 3}\n", served
        await destroy(api, restored["id"])
    finally:
        for template in (snapshot, name):
            await api.delete(f"/v1/snapshots/{template}")


async def test_a_build_on_a_service_template_replaces_its_service(env: Env, admin: httpx.AsyncClient,
                                                                   api: httpx.AsyncClient) -> None:
    first, second = f"svc-a-{secrets.token_hex(3)}", f"svc-b-{secrets.token_hex(3)}"

    def serving(text: str) -> dict[str, Any]:
        return {"cmd": f"mkdir -p /tmp/site && echo {text} > /tmp/site/index.html && "
                       "exec python3 -m http.server 8000 --directory /tmp/site",
                "ready": {"http_port": 8000, "http_path": "/index.html", "interval_sec": 0.1}}

    try:
        built = await _build(admin, {"name": first, "team_id": env.a.team_id, "start": serving("first")})
        assert built["status"] == "succeeded", (built["error"], built["logs"])
        # Its build capsule runs the first service; this build stops it and starts its own on the same port.
        built = await _build(admin, {"name": second, "team_id": env.a.team_id, "base_template": first,
                                     "start": serving("second")})
        assert built["status"] == "succeeded", (built["error"], built["logs"])
        cap = await create_running(api, template=second)
        served = await _exec(api, cap["id"], "curl -sf http://127.0.0.1:8000/index.html; "
                                             "pgrep -fc '^python3 -m http.server'")
        assert served["stdout"] == "second\n1\n", served
        await destroy(api, cap["id"])
    finally:
        for template in (second, first):
            await api.delete(f"/v1/snapshots/{template}")


async def test_a_failing_readiness_check_is_the_capsules_failure_reason(env: Env, admin: httpx.AsyncClient,
                                                                         api: httpx.AsyncClient) -> None:
    name = f"once-{secrets.token_hex(3)}"
    # Starts once (in the build), then refuses: the marker is in the snapshot.
    build = await _build(admin, {
        "name": name, "team_id": env.a.team_id,
        "start": {"cmd": "if [ -e /root/.started ]; then echo 'refusing: started before' >&2; exit 1; fi; "
                         "touch /root/.started; exec sleep infinity",
                  "ready": {"cmd": "pgrep -x sleep >/dev/null || { echo 'no service'; exit 1; }",
                            "interval_sec": 0.1, "retries": 100}},
    })
    assert build["status"] == "succeeded", (build["error"], build["logs"])
    try:
        r = await api.post("/v1/capsules", json={"template": name})
        assert r.status_code == 202, r.text
        started = time.monotonic()
        failed = await wait_status(api, r.json()["id"], "error", "running", within=60)
        assert failed["status"] == "error", failed
        reason = (failed["metadata"] or {}).get("error", "")  # the capsule's failure reason
        assert "the start command exited" in reason and "refusing: started before" in reason, failed
        assert time.monotonic() - started < 8, "a start command that exited should end the wait at once"
        async with env.session_client(env.a) as session:
            deadline = time.monotonic() + 10
            while True:
                entries = (await session.get("/v1/audit-logs")).json()["entries"]
                reasons = [e["metadata"].get("error", "") for e in entries
                           if e["resource_id"] == failed["id"] and e["status"] == "failure"]
                if reasons or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
        assert reasons, entries
        assert "the start command exited" in reasons[0] and "no service" in reasons[0], reasons
        assert "refusing: started before" in reasons[0], reasons
        assert (await api.delete(f"/v1/capsules/{failed['id']}")).status_code == 202
    finally:
        await api.delete(f"/v1/snapshots/{name}")


async def test_a_service_that_never_gets_ready_fails_the_build(env: Env, admin: httpx.AsyncClient) -> None:
    name = f"never-{secrets.token_hex(3)}"
    build = await _build(admin, {
        "name": name, "team_id": env.b.team_id,
        "start": {"cmd": "echo booting; exec sleep infinity",
                  "ready": {"http_port": 8000, "interval_sec": 0.05, "timeout_sec": 1, "retries": 5}},
    })
    assert build["status"] == "failed", build
    assert "did not pass in 5 tries" in build["error"] and "GET http://" in build["error"], build["error"]
    assert "booting" in build["error"], build["error"]
    assert name not in [t["name"] for t in (await admin.get("/v1/admin/templates")).json()]

    ghost = await _build(admin, {"name": f"ghost-{secrets.token_hex(3)}", "team_id": env.b.team_id,
                                 "start": {"cmd": "exec sleep infinity", "user": "ghost"}})
    assert ghost["status"] == "failed" and "could not be started" in ghost["error"], ghost["error"]
    assert "ghost" in ghost["error"], ghost["error"]

    for bad in ({"cmd": ""}, {"cmd": "x", "ready": {}}, {"cmd": "x", "ready": {"cmd": "true", "http_port": 80}},
                {"cmd": "x", "ready": {"http_port": 70000}}, {"cmd": "x", "ready": {"cmd": "true", "retries": 0}}):
        r = await admin.post("/v1/admin/builds", json={"name": "bad-start", "start": bad})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", (bad, r.text)
