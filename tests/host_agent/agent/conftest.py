"""A real host agent (namespace runtime, real network slots, the built `minimal` template) served
over HTTP on a random loopback port, and clients for it: the HTTP one and the in-process one."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from wrenn_platform.agent_link.auth import HostKey
from wrenn_platform.agent_link.client import AgentClient, HttpAgentClient
from wrenn_platform.host_agent.api import create_app
from wrenn_platform.host_agent.local_client import LocalAgentClient
from wrenn_platform.host_agent.network import leases
from wrenn_platform.host_agent.runtimes import build_runtime
from wrenn_platform.host_agent.service import AgentSettings, HostAgent
from wrenn_platform.host_agent.slot_pool import LeasedSlots
from wrenn_platform.host_agent.templates import TemplateInfo, TemplateStore

TEST_ROOT = Path("/tmp/wrenn-agent-tests")


def cache_dir_of(template: TemplateInfo) -> Path:
    # <cache>/templates/minimal/<build>/ → <cache>
    return template.path.parent.parent.parent


@dataclass
class Served:
    agent: HostAgent
    key: HostKey
    url: str
    server: uvicorn.Server

    async def stop(self) -> None:
        self.server.should_exit = True


def make_agent(data_dir: Path, template: TemplateInfo, min_timeout_sec: int = 60, host_id: str = "host-test",
               ) -> HostAgent:
    cache = cache_dir_of(template)
    settings = AgentSettings(host_id=host_id, data_dir=data_dir, min_timeout_sec=min_timeout_sec,
                             sample_interval_s=0.5, reaper_interval_s=0.2)
    return HostAgent(settings, build_runtime("namespace", data_dir, cache), LeasedSlots(str(data_dir)),
                     TemplateStore(data_dir, cache))


@contextlib.asynccontextmanager
async def serve(agent: HostAgent, key: HostKey) -> AsyncIterator[Served]:
    """Start the agent and its API on a free loopback port; on exit stop both (capsules stay)."""
    import asyncio

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP: asyncio sets NODELAY
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await agent.start()
    server = uvicorn.Server(uvicorn.Config(create_app(agent, key), log_level="warning", ws="websockets-sansio",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
        if task.done():
            task.result()
    try:
        yield Served(agent, key, f"http://127.0.0.1:{port}", server)
    finally:
        server.should_exit = True
        await task
        sock.close()
        await agent.close()


def exist(*paths: Path) -> list[bool]:
    return [p.exists() for p in paths]


def leased_by(agent: HostAgent) -> list[int]:
    """Slot indexes the network module has leased to this agent for capsules (not its spares)."""
    assert isinstance(agent.slots, LeasedSlots)
    spares = {slot.index for slot in agent.slots._ready}
    return sorted(lease.index for lease in leases.list_leases(agent.slots.lease_dir)
                  if lease.owner == agent.slots.owner and lease.index not in spares)


async def destroy_all(agent: HostAgent) -> None:
    for info in agent.list_capsules():
        with contextlib.suppress(Exception):
            await agent.destroy(info.id)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh agent data dir on a path capsule users can traverse (pytest's tmp_path is 0700 root,
    which the unprivileged capsule processes cannot pass)."""
    TEST_ROOT.mkdir(mode=0o755, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="agent-", dir=TEST_ROOT))
    d.chmod(0o755)
    yield d / "data"
    mounts = Path("/proc/self/mounts").read_text()
    assert f" {d}/" not in mounts, f"mounts left under {d} after the test"
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def key() -> HostKey:
    return HostKey("host-test", secrets.token_bytes(32))


@pytest.fixture
async def served(data_dir: Path, minimal_template: TemplateInfo, key: HostKey) -> AsyncIterator[Served]:
    agent = make_agent(data_dir, minimal_template, min_timeout_sec=1)
    try:
        async with serve(agent, key) as s:
            yield s
    finally:
        await destroy_all(agent)


@pytest.fixture(params=["http", "local"])
async def client(request: pytest.FixtureRequest, served: Served) -> AsyncIterator[AgentClient]:
    """The same tests run over both implementations of the control plane's client."""
    c: AgentClient = HttpAgentClient(served.url, served.key) if request.param == "http" else LocalAgentClient(
        served.agent)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
async def http(served: Served) -> AsyncIterator[HttpAgentClient]:
    c = HttpAgentClient(served.url, served.key)
    try:
        yield c
    finally:
        await c.aclose()
