"""`wrenn agent` as a real daemon process: serves over HTTP, re-adopts its capsules after a restart."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from wrenn_platform.agent_link.client import HttpAgentClient
from wrenn_platform.host_agent.daemon import AgentConfig, build_agent
from wrenn_platform.host_agent.runtime.namespace import cgroups
from wrenn_platform.host_agent.templates import TemplateInfo
from wrenn_platform.wire.agent import CreateCapsuleRequest, ExecRequest, ExecResponse

from .conftest import cache_dir_of, destroy_all
from .daemon_process import child_agent, free_port

pytestmark = pytest.mark.root


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_help_answers() -> None:
    out = subprocess.run([sys.executable, "-m", "wrenn_platform.cli.main", "agent", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for option in ("--data-dir", "--listen", "--runtime", "--secret-file"):
        assert option in out


async def test_child_daemon_serves_and_readopts(data_dir: Path, minimal_template: TemplateInfo) -> None:
    config = AgentConfig(data_dir=data_dir, cache_dir=cache_dir_of(minimal_template), runtime="auto")
    secret = data_dir.parent / "secret"
    log = data_dir.parent / "agent.log"
    try:
        await _serve_twice(config, secret, log)
    finally:  # whatever a failure left running is taken back and destroyed
        leftover = build_agent(config)
        await leftover.readopt()
        await destroy_all(leftover)
        await leftover.close()


async def _serve_twice(config: AgentConfig, secret: Path, log: Path) -> None:
    port = free_port()
    async with child_agent(config, secret, port=port, log_file=log) as client:
        info = await client.info()
        assert info.runtime == "namespace"  # auto: no vmx/svm on this machine
        assert info.host_id.startswith("host-")
        capsule = await client.create(CreateCapsuleRequest())
        doomed = await client.create(CreateCapsuleRequest())
        r = await client.exec(capsule.id, ExecRequest(cmd="hostname"))
        assert isinstance(r, ExecResponse) and r.stdout.strip() == capsule.id
        # A control-plane subscriber that outlives this daemon process.
        watcher = HttpAgentClient(f"http://127.0.0.1:{port}", client.key)
        events = watcher.events(after=0)
        first_event = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.2)  # connected
    assert mode_of(secret) == 0o600
    await asyncio.to_thread(cgroups.Cgroup(doomed.id).kill_all)  # dies while no agent runs
    # A new daemon on the same data dir and port (same host id, same secret) takes the capsule
    # back, cleans up the dead one, and the subscriber reconnects and hears about it.
    async with child_agent(config, secret, port=port, log_file=log) as client:
        ev = await asyncio.wait_for(first_event, 20)
        assert (ev.event, ev.sandbox_id) == ("sandbox.stopped", doomed.id)
        await events.aclose()
        await watcher.aclose()
        assert [c.id for c in await client.list_capsules()] == [capsule.id]
        r = await client.exec(capsule.id, ExecRequest(cmd="echo", args=["again"]))
        assert isinstance(r, ExecResponse) and r.stdout == "again\n"
        await client.destroy(capsule.id)
