"""Distributed mode: two control-plane processes (`wrenn server`, no embedded agent) over one
PostgreSQL database and one Redis, three `wrenn agent` processes each in its own network namespace
with its own address, every agent given both control planes' URLs.

The team's placement tags send a capsule to the one host tagged for it (502 when no host has
them). Control plane A is killed with SIGKILL right after it accepted two creates, agent 0 is killed, and
agent 1's link is cut. What a user sees: control plane B keeps serving (a new capsule lands on the
host that is left, exec works); agent 2's heartbeats move to B and its host never leaves `online`;
the lost hosts go `unreachable` then `offline` with their capsules `missing`; when the link is back
and agent 0 restarts (naming the dead control plane first) every host is `online` and every
capsule `running` again, where it was; A, restarted, serves the same records. No capsule record
is lost or duplicated: each create that was answered 202 has exactly one record, settled, and
every capsule a host runs is the one its record places there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from wrenn_platform.agent_link.auth import HostKey, key_from_registration_token
from wrenn_platform.agent_link.client import HttpAgentClient
from wrenn_platform.control_plane.db.engine import make_engine, make_sessionmaker
from wrenn_platform.control_plane.db.models import Capsule, Event
from wrenn_platform.control_plane.hosts.placement import set_required_tags
from wrenn_platform.host_agent.templates import TemplateInfo

from ...server_process import ServerProcess
from ..admin_capsules.conftest import _make_admin
from .conftest import _make_tenant, cache_dir_of, scratch_database, scratch_root, wait_status
from .test_remote_agent import Rig, agent_process
from .test_remote_netns import Link, _host_status, linked_namespace

REDIS_URL = os.environ.get("WRENN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
OFFLINE_AFTER_S, LOST_AFTER_S = 5, 10  # heartbeats every second: five missed make a host unreachable

pytestmark = [pytest.mark.root, pytest.mark.postgres]


@contextlib.contextmanager
def control_planes(root: Path, binds: list[str], database_url: str, cache_dir: Path) -> Iterator[list[ServerProcess]]:
    shared = {  # what replicas of one control plane share: database, Redis (and a key prefix), secret key
        "WRENN_DATABASE_URL": database_url, "WRENN_REDIS_URL": REDIS_URL,
        "WRENN_REDIS_PREFIX": f"wrenn-test-{secrets.token_hex(4)}:", "WRENN_SECRET_KEY": secrets.token_hex(32),
        "WRENN_EMBEDDED_AGENT": "false",
        "WRENN_SECURE_COOKIES": "false", "WRENN_PUBLIC_URL": "http://testserver",
        "WRENN_HOST_HEARTBEAT_SECONDS": "1", "WRENN_RECONCILE_INTERVAL_SECONDS": "1",
        "WRENN_USAGE_SAMPLE_SECONDS": "1", "WRENN_HOST_OFFLINE_AFTER_SECONDS": str(OFFLINE_AFTER_S),
        "WRENN_HOST_LOST_AFTER_SECONDS": str(LOST_AFTER_S),
    }
    # The addresses are our test links': nothing else listens on them, any port is free.
    servers = [ServerProcess(root / f"cp{i}-data", host=bind, port=random.randint(20000, 60000), runtime="namespace",
                             cache_dir=cache_dir, env=shared, log_path=root / f"cp{i}.log", log_level="warning")
               for i, bind in enumerate(binds)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def _route_home(link: Link) -> None:
    """A default route to the root namespace, so the agent reaches a control plane on any link."""
    subprocess.run(["ip", "-n", link.netns, "route", "replace", "default", "via", link.root_ip], check=True)


def _reconnect(link: Link) -> None:
    link.set(up=True)
    _route_home(link)  # taking the link down dropped the route through it


async def _records(database_url: str) -> dict[str, tuple[str, str]]:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            rows = (await db.execute(select(Capsule.id, Capsule.host_id, Capsule.status))).all()
    finally:
        await engine.dispose()
    return {row[0]: (str(row[1]), row[2]) for row in rows}


async def _require_tags(database_url: str, team_id: str, tags: list[str]) -> None:
    """What `wrenn admin team-placement TEAM --require TAG` does (the CLI is tested in hosts/)."""
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            await set_required_tags(db, team_id, tags)
    finally:
        await engine.dispose()


async def _host_downs(database_url: str, host_id: str) -> int:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            events = (await db.execute(select(Event).where(Event.event == "host.down"))).scalars().all()
    finally:
        await engine.dispose()
    return sum(1 for e in events if isinstance(e.payload.get("resource"), dict)
               and e.payload["resource"].get("id") == host_id)


def test_two_control_plane_processes_three_agents_survive_failures(minimal_template: TemplateInfo) -> None:
    cache_dir = cache_dir_of(minimal_template)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(scratch_root())
        database_url = stack.enter_context(scratch_database("postgres", root))
        links = [stack.enter_context(linked_namespace()) for _ in range(3)]
        for link in links:
            _route_home(link)
        tenant = asyncio.run(_make_tenant(database_url, with_session=False))
        admin = asyncio.run(_make_admin(database_url))
        # A listens on link 0's root address, B on link 2's (never cut); agents reach both by their route.
        servers = stack.enter_context(control_planes(root, [links[0].root_ip, links[2].root_ip], database_url,
                                                     cache_dir))
        rigs = [Rig(s, root, tenant.api_key, admin.session_id or "", admin.csrf or "") for s in servers]
        asyncio.run(_scenario(rigs, servers, links, root, cache_dir, database_url, tenant.team_id))
    print(f"distributed scenario: {time.monotonic() - started:.1f} s")


class Agents:
    """The three agent processes; each joins (and rejoins) through `urls`, the first one first."""

    def __init__(self, root: Path, cache_dir: Path, links: list[Link], urls: list[str]) -> None:
        self.root, self.cache_dir, self.links, self.urls = root, cache_dir, links, urls
        self.stack = contextlib.ExitStack()
        # The address a host registered with is where the control planes call it: a restart keeps it.
        self.listen = [f"{link.ns_ip}:{random.randint(20000, 60000)}" for link in links]

    def start(self, i: int, token: str) -> subprocess.Popen[bytes]:
        home = self.root / f"agent{i}"
        home.mkdir(exist_ok=True)
        home.chmod(0o755)
        # Agent 1 takes them as one comma-separated value, the others as repeated options.
        urls = [",".join(self.urls)] if i == 1 else self.urls
        return self.stack.enter_context(agent_process(home, self.cache_dir, urls, token, self.listen[i],
                                                      netns=self.links[i].netns))

    def log(self, i: int) -> Path:
        return self.root / f"agent{i}" / "agent.log"


async def _on_hosts(agents: Agents, hosts: list[str], tokens: list[str]) -> dict[str, list[str]]:
    """capsule id → the hosts whose agent runs it, asked of each agent directly with the host's key."""
    where: dict[str, list[str]] = {}
    for i, host_id in enumerate(hosts):
        client = HttpAgentClient(f"http://{agents.listen[i]}", HostKey(host_id, key_from_registration_token(tokens[i])))
        try:
            for info in await client.list_capsules():
                if info.status not in ("stopped", "error"):
                    where.setdefault(info.id, []).append(host_id)
        finally:
            await client.aclose()
    return where


async def _exec_when_reachable(api: httpx.AsyncClient, capsule_id: str) -> None:
    """A (re)started control plane adds the hosts' clients on its first pass (every second here)."""
    deadline = time.monotonic() + 30
    while (r := await api.post(f"/v1/capsules/{capsule_id}/exec", json={"cmd": "true"})).status_code != 200:
        assert time.monotonic() < deadline, r.text
        await asyncio.sleep(0.3)


async def _scenario(rigs: list[Rig], servers: list[ServerProcess], links: list[Link], root: Path, cache_dir: Path,
                    database_url: str, team_id: str) -> None:
    a, b = rigs
    agents = Agents(root, cache_dir, links, [a.server.url, b.server.url])  # A first: the one that dies
    async with a.api() as api_a, b.api() as api_b, b.admin() as admin_b, a.admin() as admin_a:
        hosts, tokens = [], []
        for _ in range(3):
            created = (await admin_a.post("/v1/hosts", json={"type": "regular"})).json()
            hosts.append(created["host"]["id"])
            tokens.append(created["registration_token"])
        made: list[str] = []
        with agents.stack:
            procs = [agents.start(i, tokens[i]) for i in range(3)]
            for i, host_id in enumerate(hosts):
                await _host_status(admin_b, host_id, "online", agents.log(i))
            await asyncio.sleep(2)  # both control planes add the new hosts' clients on their next pass
            try:
                for n in range(6):
                    r = await (api_a, api_b)[n % 2].post("/v1/capsules", json={})
                    assert r.status_code == 202, r.text
                    made.append(r.json()["id"])
                for capsule_id in made:
                    await wait_status(api_b, capsule_id, "running")
                records = await _records(database_url)
                placed = {cid: records[cid][0] for cid in made}
                assert set(placed.values()) == set(hosts), placed  # spread by free memory

                # The team's placement tags: its capsules go only to a host carrying them; none: 502.
                r = await admin_b.post(f"/v1/hosts/{hosts[1]}/tags", json={"tag": "dedicated"})
                assert r.status_code == 204, r.text
                await _require_tags(database_url, team_id, ["dedicated"])
                r = await api_b.post("/v1/capsules", json={})
                assert r.status_code == 202, r.text
                made.append(r.json()["id"])
                await wait_status(api_b, made[-1], "running")
                placed[made[-1]] = (await _records(database_url))[made[-1]][0]
                assert placed[made[-1]] == hosts[1]
                await _require_tags(database_url, team_id, ["dedicated", "elsewhere"])
                r = await api_b.post("/v1/capsules", json={})
                assert r.status_code == 502 and r.json()["error"]["code"] == "no_host_available", r.text
                assert "dedicated, elsewhere" in r.json()["error"]["message"]
                await _require_tags(database_url, team_id, [])

                # A accepts two creates and is killed at once, their work wherever it got to.
                inflight = [(await api_a.post("/v1/capsules", json={})).json()["id"] for _ in range(2)]
                made += inflight
                await asyncio.to_thread(servers[0].kill)
                procs[0].kill()
                procs[0].wait()
                links[1].set(up=False)
                await _host_status(admin_b, hosts[1], "unreachable", agents.log(1), within=20)
                for host_id in hosts[:2]:
                    await _host_status(admin_b, host_id, "offline", agents.log(0), within=30)
                for capsule_id, host_id in placed.items():
                    await wait_status(api_b, capsule_id, "missing" if host_id in hosts[:2] else "running", within=15)
                # Agent 2 heartbeats through B now: its host stayed online, and it serves a new capsule.
                assert await _host_downs(database_url, hosts[2]) == 0
                assert f"using {b.server.url}" in agents.log(2).read_text()  # the agent's failover, logged
                r = await api_b.post("/v1/capsules", json={})
                assert r.status_code == 202, r.text
                made.append(r.json()["id"])
                await wait_status(api_b, made[-1], "running")
                assert (await _records(database_url))[made[-1]][0] == hosts[2]
                on_two = next(cid for cid, host_id in placed.items() if host_id == hosts[2])
                r = await api_b.post(f"/v1/capsules/{on_two}/exec", json={"cmd": "true"})
                assert r.status_code == 200, r.text

                # The link comes back, the killed agent restarts (its identity is kept: no token), A stays dead.
                _reconnect(links[1])
                procs[0] = agents.start(0, "")
                for i, host_id in enumerate(hosts):
                    await _host_status(admin_b, host_id, "online", agents.log(i), within=60)
                for capsule_id in placed:
                    await wait_status(api_b, capsule_id, "running", within=30)
                settled = [(await wait_status(api_b, capsule_id, "running", "error", "stopped", within=60))["status"]
                           for capsule_id in inflight]  # each settles: created, or recorded as a create that failed
                print(f"creates in flight when A was killed ended {settled}")
                assert await _host_downs(database_url, hosts[2]) == 0

                records = await _records(database_url)
                assert sorted(records) == sorted(made)  # nothing lost, nothing added
                assert {cid: records[cid][0] for cid in placed} == placed  # each where it was
                where = await _on_hosts(agents, hosts, tokens)
                assert all(len(on) == 1 for on in where.values()), where  # no capsule on two hosts
                live = {cid for cid, (_, status) in records.items() if status == "running"}
                assert {cid: on[0] for cid, on in where.items()} == {cid: records[cid][0] for cid in live}
                r = await api_b.post(f"/v1/capsules/{made[0]}/exec", json={"cmd": "true"})
                assert r.status_code == 200, r.text

                # A restarted serves the same records, and reaches every host again.
                await asyncio.to_thread(servers[0].start)
                async with a.api() as api_restarted:
                    listed = {c["id"]: c["status"] for c in (await api_restarted.get("/v1/capsules")).json()}
                    assert listed == {cid: status for cid, (_, status) in (await _records(database_url)).items()}
                    await _exec_when_reachable(api_restarted, made[0])
            finally:
                # Whatever failed: every host back, so every capsule can be destroyed on it.
                _reconnect(links[1])
                if procs[0].poll() is not None:
                    procs[0] = agents.start(0, "")
                for i, host_id in enumerate(hosts):
                    await _host_status(admin_b, host_id, "online", agents.log(i), within=60)
                for capsule_id in made:
                    await api_b.delete(f"/v1/capsules/{capsule_id}")
                for capsule_id in made:
                    await wait_status(api_b, capsule_id, "stopped", "missing", "error", within=60)
