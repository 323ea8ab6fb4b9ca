"""Force-deleting a host whose agent is reachable: its capsules are destroyed on it through the
capsule service (nothing left mounted), recorded `stopped`, and the host's credentials die with it.
A server of its own (the embedded host is the one deleted), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

from wrenn_platform.host_agent.templates import TemplateInfo

from ..admin_capsules.conftest import _make_admin
from ..capsules.conftest import (
    ServerThread,
    _make_tenant,
    cache_dir_of,
    create_running,
    make_settings,
    scratch_database,
    scratch_root,
    wait_status,
)

pytestmark = pytest.mark.root


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_force_delete_destroys_the_hosts_capsules(
    backend: str, minimal_template: TemplateInfo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wrenn_platform.host_agent.join")
    with scratch_root() as root, scratch_database(backend, root) as database_url:
        tenant = asyncio.run(_make_tenant(database_url, with_session=False))
        admin = asyncio.run(_make_admin(database_url))
        server = ServerThread(make_settings(root / "data", database_url, cache_dir_of(minimal_template)))
        server.start()
        try:
            asyncio.run(_scenario(server.url, tenant.api_key, admin.session_id or "", admin.csrf or "", root))
        finally:
            server.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "wrenn_platform.host_agent.join"]
    assert sum("was deleted or its credentials revoked" in m for m in messages) == 1, messages
    assert not any("heartbeat answered" in m for m in messages), messages


async def _mounted_under(root: Path) -> bool:
    mounts = await asyncio.to_thread(Path("/proc/self/mounts").read_text)
    return f" {root}/" in mounts


async def _scenario(url: str, api_key: str, sid: str, csrf: str, root: Path) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": api_key}, timeout=60) as api, \
            httpx.AsyncClient(base_url=url, headers={"X-CSRF-Token": csrf}, timeout=60,
                              cookies={"wrenn_sid": sid, "wrenn_csrf": csrf}) as admin:
        caps = [await create_running(api) for _ in range(2)]
        try:
            await _force_delete(api, admin, sorted(c["id"] for c in caps), root)
        finally:  # whatever a failed assertion left running
            for cap in (await api.get("/v1/capsules")).json():
                if cap["status"] not in ("stopped", "stopping"):
                    await api.delete(f"/v1/capsules/{cap['id']}")
        r = await api.post("/v1/capsules", json={})
        assert r.status_code == 502 and r.json()["error"]["code"] == "no_host_available"
        # Heartbeats (every second here) are refused from now on: the embedded agent must say so
        # once and stop, not retry forever nor re-register behind the admin's back.
        await asyncio.sleep(3)
        assert (await admin.get("/v1/hosts")).json() == []


async def _force_delete(api: httpx.AsyncClient, admin: httpx.AsyncClient, ids: list[str], root: Path) -> None:
    assert await _mounted_under(root)
    [host] = (await admin.get("/v1/hosts")).json()  # the embedded host
    assert host["status"] == "online"
    assert sorted((await admin.get(f"/v1/hosts/{host['id']}/delete-preview")).json()["sandbox_ids"]) == ids
    r = await admin.delete(f"/v1/hosts/{host['id']}")
    assert r.status_code == 409 and sorted(r.json()["error"]["sandbox_ids"]) == ids

    r = await admin.delete(f"/v1/hosts/{host['id']}", params={"force": True})
    assert r.status_code == 204, r.text
    for capsule_id in ids:
        body = await wait_status(api, capsule_id, "stopped", within=5)
        assert body["status"] == "stopped"
    assert (await admin.get("/v1/hosts")).json() == []
    assert not await _mounted_under(root)  # their disks were taken down on the host
