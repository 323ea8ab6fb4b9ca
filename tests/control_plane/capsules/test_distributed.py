"""Distributed mode: two control planes over one PostgreSQL database and one Redis, three host
agents each in its own network namespace with its own address. One agent is killed, one control
plane stopped and one agent's link cut: the surviving control plane keeps serving (new capsules go
to the remaining host), the lost hosts' capsules are `missing`, not lost; when the link is back and
the killed agent restarts, every capsule is `running` again. No capsule record is lost or
duplicated: every record is on exactly one host, and every capsule a host runs has its record."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from wrenn_platform.control_plane.db.engine import make_engine, make_sessionmaker
from wrenn_platform.control_plane.db.models import Capsule
from wrenn_platform.host_agent.templates import TemplateInfo

from ..admin_capsules.conftest import _make_admin
from .conftest import (
    ServerThread,
    _make_tenant,
    cache_dir_of,
    make_settings,
    scratch_database,
    scratch_root,
    wait_status,
)
from .test_remote_agent import Rig, agent_process
from .test_remote_netns import Link, _host_status, linked_namespace

REDIS_URL = os.environ.get("WRENN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

pytestmark = [pytest.mark.root, pytest.mark.postgres]


def _route_home(link: Link) -> None:
    """A default route to the root namespace, so the agent reaches a control plane on any link."""
    subprocess.run(["ip", "-n", link.netns, "route", "add", "default", "via", link.root_ip], check=True)


async def _records(database_url: str) -> dict[str, tuple[str, str]]:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            rows = (await db.execute(select(Capsule.id, Capsule.host_id, Capsule.status))).all()
    finally:
        await engine.dispose()
    return {row[0]: (str(row[1]), row[2]) for row in rows}


def test_two_control_planes_three_agents_survive_failures(minimal_template: TemplateInfo) -> None:
    cache_dir = cache_dir_of(minimal_template)
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(scratch_root())
        database_url = stack.enter_context(scratch_database("postgres", root))
        links = [stack.enter_context(linked_namespace()) for _ in range(3)]
        for link in links:
            _route_home(link)
        tenant = asyncio.run(_make_tenant(database_url, with_session=False))
        admin = asyncio.run(_make_admin(database_url))
        prefix = f"wrenn-test-{secrets.token_hex(4)}:"
        servers = []
        secret_key = secrets.token_hex(32)  # replicas share it: host JWTs and sealed agent keys
        for i in range(2):
            settings = make_settings(root / f"data{i}", database_url, cache_dir, embedded_agent=False,
                                     host_offline_after_seconds=3.0, host_lost_after_seconds=6.0,
                                     redis_url=REDIS_URL, redis_prefix=prefix, secret_key=secret_key)
            server = ServerThread(settings, bind=links[i].root_ip)
            server.start()
            servers.append(server)
        stopped: set[int] = set()
        try:
            rigs = [Rig(s, root, tenant.api_key, admin.session_id or "", admin.csrf or "") for s in servers]
            asyncio.run(_scenario(rigs, links, root, cache_dir, database_url, stopped))
        finally:
            for i, server in enumerate(servers):
                if i not in stopped:
                    server.stop()


class Agents:
    """The three agent processes; each joins (and rejoins) through the control plane `url`."""

    def __init__(self, root: Path, cache_dir: Path, links: list[Link], url: str) -> None:
        self.root, self.cache_dir, self.links, self.url = root, cache_dir, links, url
        self.stack = contextlib.ExitStack()
        # The address a host registered with is where the control planes call it: a restart keeps it.
        self.listen = [f"{link.ns_ip}:{random.randint(20000, 60000)}" for link in links]

    def start(self, i: int, token: str) -> subprocess.Popen[bytes]:
        home = self.root / f"agent{i}"
        home.mkdir(exist_ok=True)
        home.chmod(0o755)
        proc = self.stack.enter_context(agent_process(home, self.cache_dir, self.url, token, self.listen[i],
                                                      netns=self.links[i].netns))
        return proc


async def _scenario(rigs: list[Rig], links: list[Link], root: Path, cache_dir: Path, database_url: str,
                    stopped: set[int]) -> None:
    a, b = rigs
    agents = Agents(root, cache_dir, links, b.server.url)  # agents talk to the control plane that survives
    async with a.api() as api_a, b.api() as api_b, b.admin() as admin_b, a.admin() as admin_a:
        hosts, tokens = [], []
        for _ in range(3):
            created = (await admin_a.post("/v1/hosts", json={"type": "regular"})).json()
            hosts.append(created["host"]["id"])
            tokens.append(created["registration_token"])
        made: list[str] = []
        with agents.stack:
            procs = [agents.start(i, tokens[i]) for i in range(3)]
            for host_id in hosts:
                await _host_status(admin_b, host_id, "online", root / "agent0" / "agent.log")
            await asyncio.sleep(2)  # both control planes add the new hosts' clients on their next pass
            try:
                for n in range(6):
                    api = (api_a, api_b)[n % 2]
                    r = await api.post("/v1/capsules", json={})
                    assert r.status_code == 202, r.text
                    made.append(r.json()["id"])
                for capsule_id in made:
                    await wait_status(api_b, capsule_id, "running")
                records = await _records(database_url)
                placed = {cid: records[cid][0] for cid in made}
                assert set(placed.values()) == set(hosts), placed  # spread by free memory

                # Kill agent 0, stop control plane A, cut agent 1's link.
                procs[0].kill()
                procs[0].wait()
                await asyncio.to_thread(a.server.stop)
                stopped.add(0)
                links[1].set(up=False)
                for host_id in hosts[:2]:
                    await _host_status(admin_b, host_id, "offline", root / "agent0" / "agent.log", within=30)
                for capsule_id, host_id in placed.items():
                    await wait_status(api_b, capsule_id, "missing" if host_id in hosts[:2] else "running", within=15)
                # Service continues on B: a new capsule lands on the host that is left.
                r = await api_b.post("/v1/capsules", json={})
                assert r.status_code == 202, r.text
                made.append(r.json()["id"])
                await wait_status(api_b, made[-1], "running")
                assert (await _records(database_url))[made[-1]][0] == hosts[2]

                # The link comes back, the killed agent restarts (its identity is kept: no token).
                links[1].set(up=True)
                procs[0] = agents.start(0, "")
                for host_id in hosts:
                    await _host_status(admin_b, host_id, "online", root / "agent0" / "agent.log", within=60)
                for capsule_id in made:
                    await wait_status(api_b, capsule_id, "running", within=30)
                records = await _records(database_url)
                assert sorted(records) == sorted(made)  # nothing lost, nothing added
                assert {cid: records[cid][0] for cid in made[:6]} == placed  # each where it was
                r = await api_b.post(f"/v1/capsules/{made[0]}/exec", json={"cmd": "true"})
                assert r.status_code == 200, r.text
            finally:
                # Whatever failed: every host back, so every capsule can be destroyed on it.
                links[1].set(up=True)
                if procs[0].poll() is not None:
                    procs[0] = agents.start(0, "")
                for host_id in hosts:
                    await _host_status(admin_b, host_id, "online", root / "agent0" / "agent.log", within=60)
                for capsule_id in made:
                    await api_b.delete(f"/v1/capsules/{capsule_id}")
                for capsule_id in made:
                    await wait_status(api_b, capsule_id, "stopped", "missing", "error", within=60)
