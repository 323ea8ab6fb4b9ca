"""A capsule sees its own size: `free`, /proc/meminfo, `nproc`, `os.cpu_count()` and /proc/cpuinfo
report its memory and vCPUs, not the host's (lxcfs views and the capsule's cpuset)."""

from __future__ import annotations

import os

import pytest

from wrenn_platform.host_agent.runtime.namespace import procviews

from .conftest import MakeCapsule, sh

pytestmark = pytest.mark.root

HOST_CPUS = len(os.sched_getaffinity(0))


async def test_memory_views_show_the_capsules_limit(make_capsule: MakeCapsule) -> None:
    capsule = await make_capsule(memory_mb=512)
    assert capsule.metadata["proc_views"] == "lxcfs", capsule.metadata
    code, out, err = await sh(capsule, "free -m | awk '/^Mem:/ {print $2}'; grep MemTotal /proc/meminfo")
    assert code == 0, err
    free_total, meminfo = out.splitlines()
    assert 500 <= int(free_total) <= 512, out
    assert meminfo.split()[1:] == [str(512 * 1024), "kB"], out


@pytest.mark.skipif(HOST_CPUS < 2, reason="a 1-vcpu capsule looks like this 1-CPU host anyway")
async def test_cpu_views_show_the_capsules_vcpus(make_capsule: MakeCapsule) -> None:
    capsule = await make_capsule(vcpus=1)
    code, out, err = await sh(
        capsule,
        "nproc; python3 -c 'import os; print(os.cpu_count(), len(os.sched_getaffinity(0)))'; "
        "grep -c ^processor /proc/cpuinfo; grep -c '^cpu[0-9]' /proc/stat",
    )
    assert code == 0, err
    assert out.split() == ["1", "1", "1", "1", "1"], out


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


def test_views_are_off_with_the_reason_when_lxcfs_cannot_serve(tmp_path) -> None:  # type: ignore[no-untyped-def]
    views = procviews.ProcViews(tmp_path / "not-a-dir" / "lxcfs")
    (tmp_path / "not-a-dir").write_text("a file where the directory should be")
    assert views.ensure() is False
    assert views.status.startswith("off: lxcfs is not serving"), views.status
    assert views.bwrap_args() == []
