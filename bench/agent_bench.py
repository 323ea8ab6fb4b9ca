"""Create → first exec through the host agent's HTTP API, against raw bubblewrap in the same run.

    .venv/bin/python bench/agent_bench.py [--runs 100] [--warmup 3]

Starts a real agent (namespace runtime, real network slots, the built `minimal` template) on a
random loopback port and drives it with the control plane's `HttpAgentClient`: each run is
`POST /v1/capsules` then `POST /v1/capsules/{id}/exec` of `echo hi`, timed from the create request
to the exec's answer; the capsule is destroyed afterwards, untimed. Two baselines, interleaved run
by run with the agent so all see the same machine load:
- raw bubblewrap starting `echo hi` in the template's root file system with all namespaces
  unshared (`bwrap --unshare-all`), spawn to exit;
- the runtime without the agent: lease a slot, `runtime.create`, `echo hi` through a fresh
  `EnvdClient` (what the agent itself adds is the difference).
Prints min/median/max/p50/p99 and the ratios of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import uvicorn
from _measure import percentile  # bench/ is sys.path[0]

from wrenn_platform.agent_link.auth import HostKey
from wrenn_platform.agent_link.client import HttpAgentClient
from wrenn_platform.host_agent.api import create_app
from wrenn_platform.host_agent.envd_client import EnvdClient
from wrenn_platform.host_agent.images import build_template
from wrenn_platform.host_agent.runtime.base import CapsuleSpec
from wrenn_platform.host_agent.runtimes import build_runtime
from wrenn_platform.host_agent.service import AgentSettings, HostAgent
from wrenn_platform.host_agent.slot_pool import LeasedSlots
from wrenn_platform.host_agent.templates import TemplateInfo, TemplateStore
from wrenn_platform.wire.agent import CreateCapsuleRequest, ExecRequest, ExecResponse


def summary(name: str, values: list[float]) -> str:
    return (f"{name:<30} n={len(values):<4} min {min(values):7.1f}  median {statistics.median(values):7.1f}  "
            f"max {max(values):7.1f}  p50 {percentile(values, 0.5):7.1f}  p99 {percentile(values, 0.99):7.1f} ms")


def raw_bwrap(rootfs: Path) -> float:
    argv = ["bwrap", "--ro-bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev", "--unshare-all",
            "--die-with-parent", "/bin/echo", "hi"]
    t0 = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, check=True).stdout
    elapsed = (time.perf_counter() - t0) * 1000
    assert out == b"hi\n"
    return elapsed


async def runtime_direct(agent: HostAgent, template: TemplateInfo) -> float:
    """The same job without the agent: lease a slot, runtime.create, envd exec (fresh client)."""
    t0 = time.perf_counter()
    slot = await agent.slots.allocate("bench")
    spec = CapsuleSpec(capsule_id=f"cl-{secrets.token_hex(8)}", template="minimal", template_dir=template.path,
                       vcpus=1, memory_mb=512, disk_size_mb=5120, envd_access_token=secrets.token_urlsafe(16))
    try:
        running = await agent.runtime.create(spec, slot)
        async with EnvdClient(running.envd_url, spec.envd_access_token) as envd:
            r = await envd.run("echo", ["hi"])
        elapsed = (time.perf_counter() - t0) * 1000
        assert r.stdout == b"hi\n"
    finally:
        await agent.runtime.destroy(spec.capsule_id)
        await agent.slots.release(slot)
    return elapsed


async def through_agent(client: HttpAgentClient) -> tuple[float, float]:
    """(create → first exec, of which create) in ms."""
    t0 = time.perf_counter()
    info = await client.create(CreateCapsuleRequest())
    t1 = time.perf_counter()
    try:
        r = await client.exec(info.id, ExecRequest(cmd="echo", args=["hi"]))
        t2 = time.perf_counter()
        assert isinstance(r, ExecResponse) and r.stdout == "hi\n"
    finally:
        await client.destroy(info.id)
    return (t2 - t0) * 1000, (t1 - t0) * 1000


def make_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="wrenn-agent-bench-"))
    root.chmod(0o755)  # capsule users must traverse it
    return root


async def main(runs: int, warmup: int) -> None:
    template = build_template("minimal").info
    cache_dir = template.path.parent.parent.parent
    root = make_root()
    data_dir = root / "data"
    settings = AgentSettings(host_id="host-bench", data_dir=data_dir)
    agent = HostAgent(settings, build_runtime("namespace", data_dir, cache_dir), LeasedSlots(str(data_dir)),
                      TemplateStore(data_dir, cache_dir))
    key = HostKey("host-bench", secrets.token_bytes(32))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP: asyncio sets NODELAY
    sock.bind(("127.0.0.1", 0))
    await agent.start()
    server = uvicorn.Server(uvicorn.Config(create_app(agent, key), log_level="warning", lifespan="off",
                                           ws="websockets-sansio"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
        if task.done():
            task.result()
    client = HttpAgentClient(f"http://127.0.0.1:{sock.getsockname()[1]}", key)
    baseline: list[float] = []
    direct: list[float] = []
    total: list[float] = []
    create: list[float] = []
    try:
        # Interleaved, so all three see the same load on the machine.
        for i in range(warmup + runs):
            b = await asyncio.to_thread(raw_bwrap, template.rootfs)
            d = await runtime_direct(agent, template)
            t, c = await through_agent(client)
            if i >= warmup:
                baseline.append(b)
                direct.append(d)
                total.append(t)
                create.append(c)
    finally:
        await client.aclose()
        for info in agent.list_capsules():
            with contextlib.suppress(Exception):
                await agent.destroy(info.id)
        server.should_exit = True
        await task
        await agent.close()
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.1f} (2 cores)")
    print(summary("raw bwrap echo hi (baseline)", baseline))
    print(summary("runtime direct, no agent", direct))
    print(summary("agent create -> first exec", total))
    print(summary("  of which create", create))
    print(summary("  of which first exec", [t - c for t, c in zip(total, create, strict=True)]))
    med = statistics.median
    print(f"ratio agent/raw bwrap (medians): {med(total) / med(baseline):.2f}; "
          f"agent/runtime direct: {med(total) / med(direct):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.warmup))
