"""Per-capsule cgroups: limits, freezing, killing, usage. cgroup v1 (this machine) or v2.

v1: one directory per controller, `/sys/fs/cgroup/<controller>/wrenn/<capsule_id>`.
v2 (unified-only hosts): `/sys/fs/cgroup/wrenn/<capsule_id>`.
The launcher writes its own pid into `procs_files()` before exec'ing bwrap, so every process of
the capsule is born inside. The `wrenn` parent directories are shared by all agents and never
removed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "wrenn"
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer")
CFS_PERIOD_US = 100_000
CPU_WEIGHT_DEFAULT = 100  # cgroup v2's default `cpu.weight` (v1: 1024 `cpu.shares`)


@dataclass(frozen=True)
class Limits:
    vcpus: int
    memory_mb: int
    pids: int
    cpu_weight: int = CPU_WEIGHT_DEFAULT  # share of contended CPU against other capsules (1-10000)
    cpus: frozenset[int] | None = None  # the host CPUs it may run on (cpuset); None: all of them


def enter(procs_files: list[str]) -> None:
    """Move the calling process into the cgroups whose `cgroup.procs` files are given. Safe in a
    forked child before exec: only syscalls on pre-computed paths, no Python-level locks."""
    pid = str(os.getpid()).encode()
    for path in procs_files:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)


def is_v2_only(root: Path = CGROUP_ROOT) -> bool:
    return (root / "cgroup.controllers").exists()


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class Cgroup:
    def __init__(self, name: str, root: Path = CGROUP_ROOT) -> None:
        self.name = name
        self.v2 = is_v2_only(root)
        if self.v2:
            self.dirs = {"unified": root / PARENT / name}
        else:
            self.dirs = {c: root / c / PARENT / name for c in V1_CONTROLLERS}

    def _dir(self, controller: str) -> Path:
        return self.dirs["unified"] if self.v2 else self.dirs[controller]

    def exists(self) -> bool:
        return any(d.is_dir() for d in self.dirs.values())

    def create(self, limits: Limits) -> None:
        if self.v2:
            parent = self.dirs["unified"].parent
            parent.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):
                _write(parent.parent / "cgroup.subtree_control", "+cpu +memory +pids")
            with contextlib.suppress(OSError):
                _write(parent / "cgroup.subtree_control", "+cpu +memory +pids")
            for subtree in (parent.parent, parent):  # apart: a host without cpuset keeps the others
                with contextlib.suppress(OSError):
                    _write(subtree / "cgroup.subtree_control", "+cpuset")
        for d in self.dirs.values():
            d.parent.mkdir(exist_ok=True)
            d.mkdir()
        memory = limits.memory_mb * 1024 * 1024
        quota = limits.vcpus * CFS_PERIOD_US
        if self.v2:
            d = self.dirs["unified"]
            _write(d / "memory.max", str(memory))
            with contextlib.suppress(FileNotFoundError):
                _write(d / "memory.swap.max", "0")
            _write(d / "cpu.max", f"{quota} {CFS_PERIOD_US}")
            _write(d / "pids.max", str(limits.pids))
            if limits.cpu_weight != CPU_WEIGHT_DEFAULT:
                self.set_cpu_weight(limits.cpu_weight)
            if limits.cpus is not None and (d / "cpuset.cpus").exists():
                _write(d / "cpuset.cpus", _cpu_list(limits.cpus))
            return
        _write(self.dirs["memory"] / "memory.limit_in_bytes", str(memory))
        memsw = self.dirs["memory"] / "memory.memsw.limit_in_bytes"
        if memsw.exists():  # only with swap accounting
            _write(memsw, str(memory))
        _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(CFS_PERIOD_US))
        _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(quota))
        _write(self.dirs["pids"] / "pids.max", str(limits.pids))
        if limits.cpu_weight != CPU_WEIGHT_DEFAULT:
            self.set_cpu_weight(limits.cpu_weight)
        self._create_v1_cpuset(limits.cpus)

    def _create_v1_cpuset(self, cpus: frozenset[int] | None) -> None:
        """A v1 cpuset starts empty (no CPUs, no memory nodes: no task may join): fill the shared
        parent from the root, then the capsule's from the parent. lxcfs also looks for the CFS
        quota at the reader's *cpuset* cgroup path, so the capsule needs one of its own name."""
        d = self.dirs["cpuset"]
        for cg in (d.parent, d):
            for name in ("cpuset.mems", "cpuset.cpus"):
                if not (cg / name).read_text().strip():
                    _write(cg / name, (cg.parent / name).read_text().strip())
        if cpus is not None:
            _write(d / "cpuset.cpus", _cpu_list(cpus))

    def set_cpu_weight(self, weight: int) -> None:
        """The capsule's share of contended CPU (its quota stays): low while it waits in a warm pool."""
        if self.v2:
            _write(self.dirs["unified"] / "cpu.weight", str(weight))
        else:
            _write(self.dirs["cpu"] / "cpu.shares", str(max(2, weight * 1024 // CPU_WEIGHT_DEFAULT)))

    def cpu_weight(self) -> int:
        if self.v2:
            return int((self.dirs["unified"] / "cpu.weight").read_text())
        return int((self.dirs["cpu"] / "cpu.shares").read_text()) * CPU_WEIGHT_DEFAULT // 1024

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def pids(self) -> list[int]:
        d = self._dir("pids")
        try:
            return [int(p) for p in (d / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []

    def freeze(self, timeout: float = 5.0) -> None:
        if self.v2:
            _write(self.dirs["unified"] / "cgroup.freeze", "1")
            self._wait_for(self.dirs["unified"] / "cgroup.events", "frozen 1", timeout)
            return
        _write(self.dirs["freezer"] / "freezer.state", "FROZEN")
        self._wait_for(self.dirs["freezer"] / "freezer.state", "FROZEN", timeout)

    def thaw(self) -> None:
        if self.v2:
            _write(self.dirs["unified"] / "cgroup.freeze", "0")
        else:
            _write(self.dirs["freezer"] / "freezer.state", "THAWED")

    def frozen(self) -> bool:
        if self.v2:
            return "frozen 1" in (self.dirs["unified"] / "cgroup.events").read_text()
        return (self.dirs["freezer"] / "freezer.state").read_text().strip() == "FROZEN"

    @staticmethod
    def _wait_for(path: Path, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in path.read_text():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} did not reach {text!r}")
            time.sleep(0.0005)

    def kill_all(self, timeout: float = 5.0) -> None:
        """Freeze, SIGKILL every member, thaw, wait until empty (no fork can race the kill)."""
        if not self.exists():
            return
        if self.v2 and (self.dirs["unified"] / "cgroup.kill").exists():
            _write(self.dirs["unified"] / "cgroup.kill", "1")
        else:
            with contextlib.suppress(OSError, TimeoutError):
                self.freeze()
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                self.thaw()
        deadline = time.monotonic() + timeout
        while self.pids():
            if time.monotonic() > deadline:
                raise TimeoutError(f"cgroup {self.name} still has processes")
            time.sleep(0.001)

    def remove(self) -> None:
        for d in self.dirs.values():
            for attempt in range(500):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY while the last exiting task is being released
                    if attempt == 499:
                        raise
                    time.sleep(0.002)

    def cpu_seconds(self) -> float:
        if self.v2:
            for line in (self.dirs["unified"] / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) / 1e6
            return 0.0
        return int((self.dirs["cpuacct"] / "cpuacct.usage").read_text()) / 1e9

    def memory_bytes(self) -> int:
        if self.v2:
            return int((self.dirs["unified"] / "memory.current").read_text())
        return int((self.dirs["memory"] / "memory.usage_in_bytes").read_text())

    def oom_kills(self) -> int:
        path = self.dirs["unified"] / "memory.events" if self.v2 else self.dirs["memory"] / "memory.oom_control"
        for line in path.read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0


def _cpu_list(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def capsule_cgroup_names(root: Path = CGROUP_ROOT) -> set[str]:
    """Capsule cgroups that exist (any agent's)."""
    base = root / PARENT if is_v2_only(root) else root / "pids" / PARENT
    if not base.is_dir():
        return set()
    return {p.name for p in base.iterdir() if p.is_dir()}
