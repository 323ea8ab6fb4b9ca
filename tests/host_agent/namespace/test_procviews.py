"""A capsule sees its own size: `free`, /proc/meminfo, `nproc`, `os.cpu_count()` and /proc/cpuinfo
report its memory and vCPUs, not the host's (lxcfs views and the capsule's cpuset)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from wrenn_platform.host_agent.runtime.namespace import procviews

from .conftest import MakeCapsule, sh

pytestmark = pytest.mark.root

HOST_CPUS = len(os.sched_getaffinity(0))


async def test_memory_views_show_the_capsules_limit(make_capsule: MakeCapsule) -> None:
    capsule = await make_capsule(memory_mb=512)
    assert capsule.metadata["proc_views"] == "lxcfs", capsule.metadata
    code, out, err = await sh(capsule, "free -m | awk '/^Mem:/ {print $2}'; grep MemTotal /proc/meminfo; "
                                       "cut -d' ' -f1 /proc/uptime")
    assert code == 0, err
    free_total, meminfo, uptime = out.splitlines()
    assert 500 <= int(free_total) <= 512, out
    assert meminfo.split()[1:] == [str(512 * 1024), "kB"], out
    host_uptime = time.clock_gettime(time.CLOCK_BOOTTIME)
    assert float(uptime) < min(60.0, host_uptime), (uptime, host_uptime)  # the capsule's, not the host's


@pytest.mark.skipif(HOST_CPUS < 2, reason="a 1-vcpu capsule looks like this 1-CPU host anyway")
async def test_cpu_views_show_the_capsules_vcpus(make_capsule: MakeCapsule) -> None:
    capsule = await make_capsule(vcpus=1)
    code, out, err = await sh(
        capsule,
        "nproc; python3 -c 'import os; print(os.cpu_count(), len(os.sched_getaffinity(0)))'; "
        "grep -c ^processor /proc/cpuinfo; grep -c '^cpu[0-9]' /proc/stat; "
        "python3 -c 'import os; os.sched_setaffinity(0, range(os.cpu_count() * 64)); "
        "print(len(os.sched_getaffinity(0)))'",
        user="root",
    )
    assert code == 0, err
    # the last: capsule root asking for every CPU still runs on its one (the cpuset is a bound)
    assert out.split() == ["1"] * 6, out


async def test_a_capsule_as_large_as_the_host_sees_every_cpu(make_capsule: MakeCapsule) -> None:
    capsule = await make_capsule(vcpus=HOST_CPUS)
    code, out, err = await sh(capsule, "nproc; grep -c ^processor /proc/cpuinfo")
    assert code == 0, err
    assert out.split() == [str(HOST_CPUS)] * 2, out


def test_small_capsules_are_spread_over_the_hosts_cpus() -> None:
    cpus = [0, 1, 2, 3]
    assert [procviews.cpuset(1, slot, cpus) for slot in range(5)] == [{0}, {1}, {2}, {3}, {0}]
    assert procviews.cpuset(2, 1, cpus) == {2, 3}
    assert procviews.cpuset(4, 7, cpus) is None


def test_views_are_off_with_the_reason_when_lxcfs_cannot_serve(tmp_path: Path) -> None:
    views = procviews.ProcViews(tmp_path / "not-a-dir" / "lxcfs")
    (tmp_path / "not-a-dir").write_text("a file where the directory should be")
    assert views.ensure() is False
    assert views.status.startswith("off: lxcfs is not serving"), views.status
    assert views.bwrap_args() == []


def test_a_dead_lxcfs_is_replaced_for_the_next_capsule() -> None:
    """A private daemon (not the host's shared one, which other capsules read): killed, its mount
    fails every read; `ensure` detaches it and starts another."""
    base = Path(tempfile.mkdtemp(prefix="wrenn-test-lxcfs-", dir="/run"))
    views = procviews.ProcViews(base / "lxcfs")
    try:
        assert views.ensure() is True, views.status
        first = int((base / "lxcfs.pid").read_text())
        os.kill(first, signal.SIGKILL)
        with pytest.raises(OSError):  # ENOTCONN, ECONNABORTED or EIO, depending on the moment
            for _ in range(100):
                (base / "lxcfs" / "proc" / "meminfo").read_text()
                time.sleep(0.05)
        assert views.ensure() is True, views.status
        second = int((base / "lxcfs.pid").read_text())
        assert second != first
        assert (base / "lxcfs" / "proc" / "meminfo").read_text().startswith("MemTotal:")
        assert views.bwrap_args()[:3] == ["--ro-bind", str(base / "lxcfs" / "proc" / "cpuinfo"), "/proc/cpuinfo"]
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((base / "lxcfs.pid").read_text()), signal.SIGKILL)
        for _ in range(100):  # the mount goes with the daemon, after it has been reaped
            if str(base / "lxcfs") not in Path("/proc/self/mounts").read_text():
                break
            time.sleep(0.05)
        subprocess.run(["umount", "-l", str(base / "lxcfs")], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)
