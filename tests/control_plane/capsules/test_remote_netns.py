"""A remote host agent in a network namespace of its own, with its own address on a veth link
from the root namespace (where the control plane listens): it joins, runs capsules created through
the public API, and when its link is cut it goes `unreachable` then `offline` with its capsules
`missing`; when the link is back it is `online` again and the capsules `running`, still usable."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from wrenn_platform.host_agent.templates import TemplateInfo

from ..admin_capsules.conftest import _make_admin
from .conftest import (
    READY_TIMEOUT_S,
    Pace,
    ServerThread,
    _make_tenant,
    cache_dir_of,
    make_settings,
    scratch_database,
    scratch_root,
    wait_status,
)
from .test_remote_agent import Rig, _create_host, _create_when_reachable, agent_process

pytestmark = pytest.mark.root

CREATE_HANG_GUARD_S = 180.0


@dataclass(frozen=True)
class Link:
    netns: str
    inner: str  # the namespace's end of the veth
    root_ip: str
    ns_ip: str

    def set(self, up: bool) -> None:
        subprocess.run(["ip", "-n", self.netns, "link", "set", self.inner, "up" if up else "down"], check=True)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def linked_namespace() -> Iterator[Link]:
    """A fresh netns joined to the root namespace by a veth, 10.213.N.1 (root) ↔ 10.213.N.2 (netns)."""
    tag = secrets.token_hex(3)
    taken = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True, check=True).stdout
    n = random.choice([i for i in range(256) if f"10.213.{i}." not in taken])
    link = Link(f"wrnt-{tag}", f"wrnt{tag}b", f"10.213.{n}.1", f"10.213.{n}.2")
    outer = f"wrnt{tag}a"
    _ip("netns", "add", link.netns)
    try:
        _ip("link", "add", outer, "type", "veth", "peer", "name", link.inner, "netns", link.netns)
        _ip("addr", "add", f"{link.root_ip}/30", "dev", outer)
        _ip("link", "set", outer, "up")
        _ip("-n", link.netns, "addr", "add", f"{link.ns_ip}/30", "dev", link.inner)
        _ip("-n", link.netns, "link", "set", link.inner, "up")
        _ip("-n", link.netns, "link", "set", "lo", "up")
        yield link
    finally:
        subprocess.run(["ip", "link", "del", outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", link.netns], capture_output=True)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_agent_in_its_namespace_survives_a_cut_link(backend: str, minimal_template: TemplateInfo) -> None:
    cache_dir = cache_dir_of(minimal_template)
    with scratch_root() as root, scratch_database(backend, root) as database_url, linked_namespace() as link:
        tenant = asyncio.run(_make_tenant(database_url, with_session=False))
        admin = asyncio.run(_make_admin(database_url))
        settings = make_settings(root / "data", database_url, cache_dir, embedded_agent=False,
                                 host_offline_after_seconds=3.0, host_lost_after_seconds=6.0)
        server = ServerThread(settings, bind=link.root_ip)
        server.start()
        try:
            rig = Rig(server, root, tenant.api_key, admin.session_id or "", admin.csrf or "")
            host_id, token = asyncio.run(_create_host(rig))
            listen = f"{link.ns_ip}:{random.randint(20000, 60000)}"  # the namespace is ours: any port is free
            with agent_process(root, cache_dir, server.url, token, listen, netns=link.netns) as proc:
                asyncio.run(_scenario(rig, proc, link, host_id))
        finally:
            server.stop()


async def _host_status(admin: httpx.AsyncClient, host_id: str, wanted: str, log: Path, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while (status := (await admin.get(f"/v1/hosts/{host_id}")).json()["status"]) != wanted:
        if time.monotonic() > deadline:
            agent_log = await asyncio.to_thread(log.read_text)
            raise AssertionError(f"host stayed {status}, wanted {wanted}; agent log: {agent_log[-2000:]}")
        await asyncio.sleep(0.2)


async def _exec_ok(api: httpx.AsyncClient, capsule_id: str) -> None:
    r = await api.post(f"/v1/capsules/{capsule_id}/exec", json={"cmd": "sh", "args": ["-c", "echo hi"]})
    assert r.status_code == 200 and r.json()["stdout"] == "hi\n", r.text


async def _scenario(rig: Rig, proc: subprocess.Popen[bytes], link: Link, host_id: str) -> None:
    log = rig.root / "agent.log"
    async with rig.api() as api, rig.admin() as admin:
        await _host_status(admin, host_id, "online", log)
        assert (await admin.get(f"/v1/hosts/{host_id}")).json()["address"].startswith(link.ns_ip + ":")
        # The first capsule's start is the measured baseline (a hang guard, not a deadline); what
        # follows gets deadlines scaled by how much slower than idle (~0.5 s) it was.
        capsule_id, took = await _create_when_reachable(api, log, within=CREATE_HANG_GUARD_S)
        pace = Pace(measured_s=took, nominal_s=0.5)
        try:
            await _exec_ok(api, capsule_id)
            link.set(up=False)
            try:
                await _host_status(admin, host_id, "unreachable", log, within=pace.within(20))
                await _host_status(admin, host_id, "offline", log, within=pace.within(20))
                await wait_status(api, capsule_id, "missing", within=pace.within(10))
                r = await api.post("/v1/capsules", json={})
                assert r.status_code == 502 and r.json()["error"]["code"] == "no_host_available"
            finally:
                link.set(up=True)
            await _host_status(admin, host_id, "online", log, within=pace.within(30))
            await wait_status(api, capsule_id, "running", within=pace.within(30))
            await _exec_ok(api, capsule_id)
        finally:
            assert (await api.delete(f"/v1/capsules/{capsule_id}")).status_code == 202
            await wait_status(api, capsule_id, "stopped", within=pace.within(READY_TIMEOUT_S))
        assert proc.poll() is None, log.read_text()
