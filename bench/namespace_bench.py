"""Namespace runtime benchmark: create → first exec, memory per idle capsule, destroy, leaks.

    sudo .venv/bin/python bench/namespace_bench.py [--cycles 50] [--idle 200] [--leak-cycles 1000]

Baselines measured in the same run: raw bubblewrap running `echo hi` over the same template
tree, and raw bubblewrap starting the same envd and answering one `echo hi` through it. Prints
min/median/max and the ratio of the runtime's median to each baseline's. Needs root and the
`minimal` template (`wrenn template build minimal`).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import time
import uuid
from pathlib import Path

from wrenn_platform.host_agent.envd_client import EnvdClient
from wrenn_platform.host_agent.images import build_template
from wrenn_platform.host_agent.network import allocate_slot, leases, release_slot
from wrenn_platform.host_agent.network.slots import slot_for_index
from wrenn_platform.host_agent.runtime.base import CapsuleSpec, NetworkSlot
from wrenn_platform.host_agent.runtime.namespace import NamespaceRuntime, cgroups
from wrenn_platform.wire.envd import envd_url

TOKEN = "bench-" + uuid.uuid4().hex
STATE = Path("/var/tmp/wrenn-bench-namespace") / uuid.uuid4().hex[:8]
OWNER = f"bench:{STATE}"


def stats(name: str, values: list[float], unit: str = "ms", scale: float = 1000.0) -> float:
    values = sorted(values)
    med = statistics.median(values)
    p99 = values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]
    print(
        f"  {name:34s} n={len(values):4d}  min {values[0] * scale:8.1f}  median {med * scale:8.1f}  "
        f"p99 {p99 * scale:8.1f}  max {values[-1] * scale:8.1f} {unit}"
    )
    return med


def spec(template_dir: Path, **kw: object) -> CapsuleSpec:
    values: dict[str, object] = dict(
        capsule_id="cl-b" + uuid.uuid4().hex[:10],
        template="minimal",
        template_dir=template_dir,
        vcpus=1,
        memory_mb=256,
        disk_size_mb=1024,
        envd_access_token=TOKEN,
    )
    values.update(kw)
    return CapsuleSpec(**values)  # type: ignore[arg-type]


def raw_echo(rootfs: Path) -> float:
    start = time.perf_counter()
    out = subprocess.run(
        [
            "bwrap",
            "--ro-bind",
            str(rootfs),
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-net",
            "/bin/echo",
            "hi",
        ],
        capture_output=True,
        check=True,
    ).stdout
    assert out == b"hi\n"
    return time.perf_counter() - start


async def raw_envd_echo(rootfs: Path, slot: NetworkSlot) -> float:
    """Raw bwrap in a ready slot netns starting envd, then one `echo hi` through it."""
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "nsenter",
        f"--net=/run/netns/{slot.netns}",
        "bwrap",
        "--ro-bind",
        str(rootfs),
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
        "--setenv",
        "WRENN_ENVD_ACCESS_TOKEN",
        TOKEN,
        "/usr/local/bin/wrenn-envd",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with EnvdClient(envd_url(slot.host_ip), TOKEN) as client:
            await client.wait_ready(20)
            result = await client.run("echo", ["hi"])
            assert result.stdout == b"hi\n"
        return time.perf_counter() - start
    finally:
        proc.kill()
        await proc.wait()


async def create_exec_destroy(runtime: NamespaceRuntime, template_dir: Path) -> tuple[float, float, float, float]:
    s = spec(template_dir)
    start = time.perf_counter()
    slot = await allocate_slot(OWNER, s.capsule_id)
    capsule = await runtime.create(s, slot)
    created = time.perf_counter()
    async with EnvdClient(capsule.envd_url, TOKEN) as client:
        result = await client.run("echo", ["hi"])
    assert result.stdout == b"hi\n"
    first_exec = time.perf_counter()
    await runtime.destroy(s.capsule_id)
    destroyed = time.perf_counter()
    await release_slot(slot)
    released = time.perf_counter()
    return created - start, first_exec - start, destroyed - first_exec, released - first_exec


def our_leftovers(ids: list[str], slots: list[int]) -> dict[str, int]:
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if line.split()[4].startswith(str(STATE))]
    netns = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    loops = subprocess.run(["losetup", "-l", "-n", "-O", "BACK-FILE"], capture_output=True, text=True).stdout
    nft = subprocess.run(["nft", "-a", "list", "table", "inet", "wrenn"], capture_output=True, text=True).stdout
    names = [slot_for_index(i, ()) for i in set(slots)]
    return {
        "mounts": len(mounts),
        "cgroups": sum(1 for i in ids if cgroups.Cgroup(i).exists()),
        "netns": sum(1 for s in names if s.netns in netns),
        "veths": sum(1 for s in names if f" {s.host_iface}@" in links),
        "loop devices": sum(1 for line in loops.splitlines() if str(STATE) in line),
        "nft rules naming a slot": sum(1 for s in names if s.host_ip in nft),
        "leases": sum(1 for lease in leases.list_leases() if lease.owner == OWNER),
        "files": sum(1 for _ in STATE.rglob("*")),
    }


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def pss_of_cgroup(capsule_id: str) -> int:
    total = 0
    for pid in cgroups.Cgroup(capsule_id).pids():
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += sum(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except OSError:
            pass
    return total


async def idle_memory(runtime: NamespaceRuntime, template_dir: Path, count: int) -> None:
    made: list[tuple[str, NetworkSlot]] = []
    before = mem_available()
    sem = asyncio.Semaphore(4)

    async def one() -> None:
        async with sem:
            s = spec(template_dir)
            slot = await allocate_slot(OWNER, s.capsule_id)
            made.append((s.capsule_id, slot))
            await runtime.create(s, slot)

    start = time.perf_counter()
    try:
        await asyncio.gather(*(one() for _ in range(count)))
        elapsed = time.perf_counter() - start
        await asyncio.sleep(5)  # let start-up settle
        after = mem_available()
        cg = [cgroups.Cgroup(cid).memory_bytes() for cid, _ in made]
        pss = [pss_of_cgroup(cid) for cid, _ in made]
        print(f"  {count} idle capsules created in {elapsed:.1f} s (4 at a time)")
        stats("memory cgroup usage per capsule", [float(x) for x in cg], "MiB", 1 / 2**20)
        stats("PSS of the capsule's processes", [float(x) for x in pss], "MiB", 1 / 2**20)
        print(
            f"  host MemAvailable drop / capsule: {(before - after) / count / 2**20:8.1f} MiB "
            "(noisy: others use this machine)"
        )
    finally:
        for cid, slot in made:
            await runtime.destroy(cid)
            await release_slot(slot)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--leak-cycles", type=int, default=1000)
    args = parser.parse_args()
    template = build_template("minimal").info
    rootfs = template.path / "rootfs"
    runtime = NamespaceRuntime(STATE)
    print(f"namespace runtime bench: template {template.path}, state {STATE}")
    try:
        await create_exec_destroy(runtime, template.path)  # warm caches
        raw, raw_envd, create, first_exec, destroy, destroy_release = [], [], [], [], [], []
        bslot = await allocate_slot(OWNER, "bench-raw")
        try:
            for _ in range(args.cycles):
                raw.append(raw_echo(rootfs))
                raw_envd.append(await raw_envd_echo(rootfs, bslot))
                c, f, d, dr = await create_exec_destroy(runtime, template.path)
                create.append(c)
                first_exec.append(f)
                destroy.append(d)
                destroy_release.append(dr)
        finally:
            await release_slot(bslot)
        print("create → first exec (interleaved runs):")
        m_raw = stats("raw bwrap: echo hi", raw)
        m_raw_envd = stats("raw bwrap: start envd + echo via envd", raw_envd)
        stats("runtime: slot + create (envd ready)", create)
        m_first = stats("runtime: slot + create + first exec", first_exec)
        print(f"  ratio first exec / raw echo: {m_first / m_raw:.2f}x; / raw envd+echo: {m_first / m_raw_envd:.2f}x")
        stats("destroy (runtime)", destroy)
        stats("destroy + slot release", destroy_release)

        print("memory:")
        await idle_memory(runtime, template.path, args.idle)

        print(f"leak check over {args.leak_cycles} create/destroy cycles:")
        ids: list[str] = []
        slots: list[int] = []
        start = time.perf_counter()
        for i in range(args.leak_cycles):
            s = spec(template.path)
            slot = await allocate_slot(OWNER, s.capsule_id)
            try:
                await runtime.create(s, slot)
            finally:
                await runtime.destroy(s.capsule_id)
                await release_slot(slot)
            ids.append(s.capsule_id)
            slots.append(slot.index)
            if (i + 1) % 200 == 0:
                print(f"  ... {i + 1} cycles, {time.perf_counter() - start:.0f} s")
        left = our_leftovers(ids, slots)
        print(f"  left behind: {left}")
        print("  LEAK CHECK", "PASSED" if not any(left.values()) else "FAILED")
    finally:
        shutil.rmtree(STATE, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
