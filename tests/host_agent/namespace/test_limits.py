"""Limits hold inside a capsule and the host is unharmed: memory (OOM inside), CPU quota, pids
(fork bomb contained), open files per process, disk (ENOSPC inside)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from wrenn_platform.host_agent.runtime.namespace import NamespaceRuntime, cgroups

from .conftest import MakeCapsule, envd, sh

pytestmark = pytest.mark.root


async def test_memory_limit_ooms_inside_the_capsule(make_capsule: MakeCapsule) -> None:
    capsule = await make_capsule(memory_mb=128)
    cg = cgroups.Cgroup(capsule.capsule_id)
    code, _, _ = await sh(capsule, "python3 -c 'x = bytearray(400 * 1024 * 1024); x[::4096] = b\"a\" * len(x[::4096])'")
    assert code != 0  # killed
    assert cg.oom_kills() >= 1
    assert cg.memory_bytes() <= 128 * 1024 * 1024
    code, out, _ = await sh(capsule, "echo still-alive")  # envd survived
    assert (code, out) == (0, "still-alive\n")


FD_PROBE = """python3 - <<'PY'
import errno, os, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard * 4, hard * 4))
    raised = "raised"
except (ValueError, OSError):
    raised = "refused"
fds = []
try:
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as e:
    stop = errno.errorcode[e.errno]
print(soft, hard, raised, len(fds) + 3, stop)
PY"""


async def test_open_files_are_bounded_per_process(make_capsule: MakeCapsule, runtime: NamespaceRuntime) -> None:
    capsule = await make_capsule()
    for user in ("user", "root"):
        code, out, err = await sh(capsule, FD_PROBE, user=user)
        assert code == 0, err
        soft, hard, raised, opened, stop = out.split()
        assert (int(soft), int(hard), raised, stop) == (runtime.nofile_max, runtime.nofile_max, "refused", "EMFILE")
        assert int(opened) <= runtime.nofile_max, out
    code, out, _ = await sh(capsule, "echo still-alive")
    assert (code, out) == (0, "still-alive\n")


async def test_the_capsules_own_oom_spares_envd(make_capsule: MakeCapsule) -> None:
    """tmpfs pages belong to no process: filling /dev/shm past the limit made the OOM killer pick by
    size, and envd was the largest, so the capsule died. /dev/shm now holds at most half the memory,
    and whatever envd starts is picked before envd (oom_score_adj 1000): the capsule still answers."""
    capsule = await make_capsule(memory_mb=256)
    # (set just after the start: a process that reads it in its very first instant may see 0)
    code, out, _ = await sh(capsule, "sleep 0.2; cat /proc/1/oom_score_adj /proc/self/oom_score_adj; "
                                     "sh -c 'cat /proc/self/oom_score_adj'; df -k /dev/shm | tail -1")
    bwrap_adj, own_adj, grandchild_adj, *df = out.split()
    assert (bwrap_adj, own_adj, grandchild_adj) == ("0", "1000", "1000"), out
    assert int(df[1]) == 128 * 1024, out
    for user in ("user", "root"):
        code, out, _ = await sh(capsule, "head -c 400M /dev/zero > /dev/shm/fill; echo rc=$?", user=user, within=60)
        assert "rc=1" in out  # ENOSPC at the cap, not an OOM
        code, out, _ = await sh(capsule, "echo still-alive; rm -f /dev/shm/fill", user="root")
        assert (code, out) == (0, "still-alive\n"), user
    # memory only a process holds (a memfd written, never mapped: not in its RSS) beside a full
    # /dev/shm: the OOM killer takes the process, not envd, and its memory comes back
    # The hog also holds 64 MiB of its own (anonymous, in its RSS): memfd pages are in nobody's RSS,
    # so without it the hog and its shell would tie as the OOM killer's pick.
    hog = ("python3 -c 'import os\nheld = b\"x\" * (64 << 20)\n"
           "fd = os.memfd_create(\"hog\")\nblock = b\"x\" * (1 << 20)\n"
           "while True: os.write(fd, block)'")
    code, out, _ = await sh(capsule, f"head -c 127M /dev/zero > /dev/shm/fill; {hog}; echo rc=$?", within=60)
    assert "rc=137" in out, out  # SIGKILL from the capsule's OOM killer
    assert cgroups.Cgroup(capsule.capsule_id).oom_kills() >= 1
    code, out, _ = await sh(capsule, "echo still-alive; rm -f /dev/shm/fill", user="root")
    assert (code, out) == (0, "still-alive\n")


async def test_cpu_quota_caps_usage(make_capsule: MakeCapsule, runtime: NamespaceRuntime) -> None:
    capsule = await make_capsule(vcpus=2)
    cpu_dir = Path("/sys/fs/cgroup/cpu/wrenn") / capsule.capsule_id
    assert int((cpu_dir / "cpu.cfs_quota_us").read_text()) == 2 * int((cpu_dir / "cpu.cfs_period_us").read_text())
    # Others share this 2-core machine (load averages of 10-20 seen), so a cap of 1 CPU may never
    # be reached: tighten the same quota to 0.05 CPU and check that every process obeys it.
    (cpu_dir / "cpu.cfs_quota_us").write_text("5000")
    before = runtime.sample(capsule.capsule_id).cpu_seconds
    start = time.monotonic()
    await sh(capsule, "timeout 2 sh -c 'while :; do :; done' & timeout 2 sh -c 'while :; do :; done' & wait")
    wall = time.monotonic() - start
    used = runtime.sample(capsule.capsule_id).cpu_seconds - before
    stat = (cpu_dir / "cpu.stat").read_text()
    throttled = int(next(line.split()[1] for line in stat.splitlines() if line.startswith("nr_throttled")))
    assert used <= wall * 0.05 + 0.05, (used, wall)
    assert throttled > 0, stat


async def test_pids_limit_contains_a_fork_bomb(make_capsule: MakeCapsule) -> None:
    capsule = await make_capsule()  # runtime fixture: pids_max=256
    pids_dir = Path("/sys/fs/cgroup/pids/wrenn") / capsule.capsule_id
    async with envd(capsule) as client:
        await client.start_background("/bin/sh", ["-c", "bomb() { bomb | bomb & }; bomb"], user="user")

    def refused() -> int:
        return int((pids_dir / "pids.events").read_text().split()[1])

    for _ in range(600):  # the bomb reaches the limit within seconds, even on a loaded machine
        if await asyncio.to_thread(refused) > 0:
            break
        await asyncio.sleep(0.1)
    assert await asyncio.to_thread(refused) > 0  # forks were refused
    assert int((pids_dir / "pids.max").read_text()) == 256
    assert int((pids_dir / "pids.current").read_text()) <= 256
    # the host can still fork
    proc = await asyncio.create_subprocess_exec("true")
    assert await proc.wait() == 0


async def test_disk_limit_gives_enospc_inside(make_capsule: MakeCapsule, runtime: NamespaceRuntime) -> None:
    capsule = await make_capsule(disk_size_mb=64)
    _code, out, _err = await sh(capsule, "dd if=/dev/zero of=/home/user/big bs=1M count=200 2>&1; echo rc=$?")
    assert "No space left on device" in out
    assert "rc=1" in out
    image = runtime.state_dir(capsule.capsule_id) / "disk.img"
    assert image.stat().st_size == 64 * 1024 * 1024
    assert runtime.sample(capsule.capsule_id).disk_bytes <= 64 * 1024 * 1024
    _code, out, _ = await sh(capsule, "rm /home/user/big && echo ok")  # the capsule recovers
    assert out == "ok\n"
    assert os.statvfs("/").f_bavail > 0


async def test_capsule_cannot_fill_the_host_disk_through_its_console(
    make_capsule: MakeCapsule, runtime: NamespaceRuntime
) -> None:
    capsule = await make_capsule(disk_size_mb=32)
    # bwrap (pid 1 inside) holds the console log open: it is neither writable by capsule root nor
    # on the host disk
    _, out, _ = await sh(capsule, "head -c 64M /dev/zero > /proc/1/fd/1; echo rc=$?", user="root")
    assert "rc=0" not in out
    assert runtime.sample(capsule.capsule_id).disk_bytes <= 32 * 1024 * 1024
    host_files = [p for p in runtime.state_dir(capsule.capsule_id).iterdir() if p.name not in ("disk", "root")]
    assert all(p.is_dir() or p.stat().st_blocks * 512 < 1024 * 1024 for p in host_files)
