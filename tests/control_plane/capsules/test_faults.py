"""Faults, each on servers of its own: a control plane that cannot reach the capsule's host (502,
then reconciliation by the one that can), a control-plane restart (capsules keep running and stay
controllable), auto-pause reported through `sandbox-events`, a crashed capsule reported honestly,
and a create that fails on the host leaving nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from wrenn_platform.host_agent.runtime.namespace import NamespaceRuntime
from wrenn_platform.host_agent.templates import TemplateInfo

from .conftest import (
    ServerThread,
    Tenant,
    _make_tenant,
    cache_dir_of,
    create_running,
    destroy,
    make_settings,
    scratch_database,
    scratch_root,
    wait_status,
)


@dataclass
class Rig:
    root: Path
    database_url: str
    cache_dir: Path
    tenant: Tenant

    def server(self, **overrides: object) -> ServerThread:
        return ServerThread(make_settings(self.root / "data", self.database_url, self.cache_dir, **overrides))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def rig(request: pytest.FixtureRequest, minimal_template: TemplateInfo) -> Iterator[Rig]:
    with scratch_root() as root, scratch_database(request.param, root) as database_url:
        tenant = asyncio.run(_make_tenant(database_url, with_session=False))
        yield Rig(root, database_url, cache_dir_of(minimal_template), tenant)


@contextlib.asynccontextmanager
async def running(server: ServerThread, cleanup: Tenant | None = None) -> AsyncIterator[ServerThread]:
    """Serve; on exit destroy (through the API) what `cleanup`'s team still has, then stop."""
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        try:
            if cleanup is not None and server.settings.embedded_agent:
                await _destroy_everything(server, cleanup)
        finally:
            await asyncio.to_thread(server.stop)


async def _destroy_everything(server: ServerThread, tenant: Tenant) -> None:
    async with client(server, tenant) as api:
        for cap in (await api.get("/v1/capsules")).json():
            if cap["status"] not in ("stopped", "stopping"):
                await api.delete(f"/v1/capsules/{cap['id']}")
        for cap in (await api.get("/v1/capsules")).json():
            await wait_status(api, cap["id"], "stopped", "error", "missing")


def client(server: ServerThread, tenant: Tenant) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, headers=tenant.headers(), timeout=60)


async def test_unreachable_agent_is_502_and_reconciled(rig: Rig) -> None:
    async with running(rig.server(), rig.tenant) as main, running(rig.server(embedded_agent=False)) as replica, \
            client(main, rig.tenant) as api, client(replica, rig.tenant) as far:
        cap = await create_running(api)
        cid = cap["id"]
        assert (await far.get(f"/v1/capsules/{cid}")).json()["status"] == "running"  # records are shared
        for method, path, body in [("POST", "/exec", {"cmd": "true"}), ("GET", "/processes", None),
                                   ("POST", "/files/list", {"path": "/"}), ("POST", "/ping", None),
                                   ("POST", "/pause", None), ("GET", "/metrics", None)]:
            r = await far.request(method, f"/v1/capsules/{cid}{path}", json=body)
            assert r.status_code == 502, (path, r.text)
            assert r.json()["error"]["code"] == "agent_unreachable" and "unreachable" in r.json()["error"]["message"]
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{replica.ws_url}/v1/capsules/{cid}/exec/stream",
                               additional_headers=rig.tenant.headers()):
                pass
        assert info.value.response.status_code == 502
        r = await far.post("/v1/capsules", json={})
        assert r.status_code == 502 and r.json()["error"]["code"] == "no_host_available"
        assert (await api.get(f"/v1/capsules/{cid}")).json()["status"] == "running"  # 502s changed nothing

        # A destroy accepted where the host is unreachable is finished by the control plane that reaches it.
        assert (await far.delete(f"/v1/capsules/{cid}")).status_code == 202
        assert (await far.get(f"/v1/capsules/{cid}")).json()["status"] == "stopping"
        assert (await wait_status(api, cid, "stopped", within=15))["status"] == "stopped"


async def test_restart_keeps_capsules_running_and_controllable(rig: Rig) -> None:
    server = rig.server()
    async with running(server), client(server, rig.tenant) as api:  # no clean-up: capsules must survive
        cap = await create_running(api)
        paused = await create_running(api)
        r = await api.post(f"/v1/capsules/{cap['id']}/exec",
                           json={"cmd": "sleep", "args": ["600"], "background": True, "tag": "survivor"})
        assert r.status_code == 202
        assert (await api.post(f"/v1/capsules/{cap['id']}/files/write", data={"path": "/tmp/kept"},
                               files={"file": ("k", b"kept")})).status_code == 204
        assert (await api.post(f"/v1/capsules/{paused['id']}/pause")).status_code == 202
        await wait_status(api, paused["id"], "paused")
    # the control plane (and its embedded agent) is down; capsules stay up
    async with running(server, rig.tenant), client(server, rig.tenant) as api:
        assert (await api.get(f"/v1/capsules/{cap['id']}")).json()["status"] == "running"
        r = await api.post(f"/v1/capsules/{cap['id']}/exec", json={"cmd": "cat", "args": ["/tmp/kept"]})
        assert r.status_code == 200 and r.json()["stdout"] == "kept", r.text
        tags = {p.get("tag") for p in (await api.get(f"/v1/capsules/{cap['id']}/processes")).json()["processes"]}
        assert "survivor" in tags
        assert (await api.get(f"/v1/capsules/{paused['id']}")).json()["status"] == "paused"
        assert (await api.post(f"/v1/capsules/{paused['id']}/resume")).status_code == 202
        await wait_status(api, paused["id"], "running")
        await destroy(api, cap["id"])
        await destroy(api, paused["id"])


async def test_capsule_lost_by_the_host_shows_missing(rig: Rig) -> None:
    server = rig.server()
    async with running(server), client(server, rig.tenant) as api:
        cap = await create_running(api)
    # While the control plane and its agent are down, the host loses the capsule entirely (as after
    # a host reinstall): its runtime state and the agent's record of it are gone.
    data = rig.root / "data"
    await NamespaceRuntime(data / "namespace").destroy(cap["id"])
    (data / "agent" / "capsules" / f"{cap['id']}.json").unlink()
    async with running(server, rig.tenant), client(server, rig.tenant) as api:
        lost = await wait_status(api, cap["id"], "missing", within=15)
        assert lost["status"] == "missing"
        assert (await api.post(f"/v1/capsules/{cap['id']}/exec", json={"cmd": "true"})).status_code == 409
        await destroy(api, cap["id"])


async def test_auto_pause_reported_through_sandbox_events(rig: Rig) -> None:
    server = rig.server(capsule_min_timeout_sec=1)
    async with running(server, rig.tenant), client(server, rig.tenant) as api:
        cap = await create_running(api, timeout_sec=2)
        assert cap["timeout_sec"] == 2
        paused = await wait_status(api, cap["id"], "paused", within=20)
        assert paused["status"] == "paused"
        assert (await api.post(f"/v1/capsules/{cap['id']}/resume")).status_code == 202
        await wait_status(api, cap["id"], "running")
        await destroy(api, cap["id"])


def _capsule_pids(capsule_id: str) -> list[int]:
    for controller in ("pids", "memory", "cpu", "freezer", "unified", ""):
        procs = Path("/sys/fs/cgroup", controller, "wrenn", capsule_id, "cgroup.procs")
        if procs.exists():
            return [int(p) for p in procs.read_text().split()]
    return []


async def test_crashed_capsule_is_not_reported_running(rig: Rig) -> None:
    server = rig.server()
    async with running(server, rig.tenant), client(server, rig.tenant) as api:
        cap = await create_running(api)
        pids = _capsule_pids(cap["id"])
        assert pids, "no processes found for the capsule"
        for pid in pids:  # our own capsule: simulate a crash of everything inside it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        after = await wait_status(api, cap["id"], "error", "stopped", "missing", within=15)
        assert after["status"] != "running"


async def test_refused_create_leaves_nothing_behind(rig: Rig) -> None:
    server = rig.server()
    async with running(server, rig.tenant), client(server, rig.tenant) as api:
        r = await api.post("/v1/capsules", json={"template": "no-such-template"})
        failed = await wait_status(api, r.json()["id"], "error")
        assert failed["status"] == "error"
        assert await asyncio.to_thread(_traces, failed["id"], rig.root / "data") == []
        await destroy(api, failed["id"])


def _traces(capsule_id: str, data: Path) -> list[str]:
    """Whatever of the capsule exists on this host: files, mounts, cgroups."""
    found = [str(p) for p in data.rglob("*") if capsule_id in p.name]
    found += [line for line in Path("/proc/self/mounts").read_text().splitlines() if capsule_id in line]
    found += [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/wrenn/{capsule_id}")]
    return found
