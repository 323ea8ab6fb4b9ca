"""What a capsule sees of its own size: /proc views from lxcfs, and a cpuset of `vcpus` CPUs.

Without these a namespace capsule reads the host's /proc: `free` shows the host's memory and
`nproc` its CPUs, so runtimes that size themselves from them (JVM heaps, Node and Python worker
pools) plan for a machine they do not have and are OOM-killed or throttled.

- Memory, uptime, load and the CPU count of /proc/cpuinfo and /proc/stat: one lxcfs daemon per
  host (Debian's `lxcfs`, a FUSE file system) serves per-cgroup versions of those files; the
  capsule gets them bound over its own /proc files. lxcfs finds the reader's cgroup from its pid
  (FUSE gives it the host pid, whatever namespaces the reader is in) and reads the cgroup's
  memory limit and CFS quota (`--enable-cfs`: quota / period CPUs, which is `vcpus`). glibc's
  `sysconf(_SC_NPROCESSORS_ONLN)` (Python's `os.cpu_count()`) counts the cpus of /proc/stat when
  /sys/devices/system/cpu/online is absent, as it is in a capsule (no /sys is mounted).
- `nproc` and `os.sched_getaffinity`: the capsule's cgroup has a cpuset of `vcpus` host CPUs
  (see `cpuset`), a bound it cannot widen. lxcfs needs it too: it looks for the CFS quota at the
  reader's cpuset cgroup path. A capsule with as many vcpus as the host has CPUs gets them all.

One daemon serves every agent on the host (machine-wide like the slot leases), under
`/run/wrenn/lxcfs`; it outlives the agent that started it, as the capsules using it do. If it
cannot be started the capsules still run, with the host's /proc; the reason is logged and put in
each capsule's metadata (`proc_views`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from . import disk

log = logging.getLogger(__name__)

LXCFS = "lxcfs"
DEFAULT_DIR = Path("/run/wrenn/lxcfs")
# The /proc files lxcfs 5 virtualizes per cgroup (slabinfo left out: it is root-only on the host too).
PROC_FILES = ("cpuinfo", "meminfo", "stat", "uptime", "loadavg", "diskstats", "swaps")
START_TIMEOUT = 10.0


class ProcViews:
    """The host's lxcfs mount, started if needed. `mount_dir` is where lxcfs is mounted; its parent
    holds the lock, pid file and log."""

    def __init__(self, mount_dir: Path = DEFAULT_DIR) -> None:
        self.mount_dir = mount_dir
        self.error: str | None = None
        self._daemon: subprocess.Popen[bytes] | None = None  # when this agent started it

    @property
    def status(self) -> str:
        """For capsule metadata: "lxcfs" or "off: <reason>"."""
        return "lxcfs" if self.error is None else f"off: {self.error}"

    def _serving(self) -> bool:
        try:
            with open(self.mount_dir / "proc" / "meminfo") as f:
                return f.readline().startswith("MemTotal:")
        except OSError:
            return False

    def ensure(self) -> bool:
        """Start lxcfs unless one is already serving `mount_dir` (another agent's, or an earlier
        run's). Returns whether views are on; when off, `error` says why (also logged)."""
        if self._serving():
            self.error = None
            return True
        try:
            with self._locked():
                if not self._serving():
                    self._start()
            self.error = None
            return True
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            self.error = f"lxcfs is not serving {self.mount_dir}: {exc}"
            log.warning("namespace: capsules will see the host's /proc (memory, CPUs): %s", self.error)
            return False

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.mount_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        with open(self.mount_dir.parent / "lxcfs.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _start(self) -> None:
        binary = shutil.which(LXCFS) or shutil.which(LXCFS, path="/usr/bin:/usr/sbin")
        if binary is None:
            raise RuntimeError("lxcfs is not installed (scripts/install-system-deps installs it)")
        self._unmount_stale()
        self.mount_dir.mkdir(parents=True, exist_ok=True)
        self.mount_dir.chmod(0o755)  # capsule users (unprivileged host uids) traverse it in bwrap
        log_path = self.mount_dir.parent / "lxcfs.log"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                # -f: stay in the foreground of our own session (no double fork to lose the pid);
                # --enable-cfs: CPUs from the CFS quota (vcpus); -l: per-cgroup load averages;
                # -u: no swap lines (capsules have none: memsw is capped at the memory limit).
                [binary, "-f", "--enable-cfs", "-l", "-u", "-p", str(self.mount_dir.parent / "lxcfs.pid"),
                 str(self.mount_dir)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, cwd="/",
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._serving():
            if proc.poll() is not None:
                tail = log_path.read_bytes()[-500:].decode(errors="replace").strip()
                raise RuntimeError(f"lxcfs exited with {proc.returncode}: {tail}")
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"lxcfs did not serve within {START_TIMEOUT:.0f} s")
            time.sleep(0.05)
        self._daemon = proc
        log.info("namespace: lxcfs (pid %d) serves capsule /proc views at %s", proc.pid, self.mount_dir)

    def _unmount_stale(self) -> None:
        """A dead lxcfs leaves its mount behind (reads fail: ENOTCONN, ECONNABORTED, EIO): detach it."""
        if str(self.mount_dir) in disk.mount_points():
            subprocess.run(["umount", "-l", str(self.mount_dir)], check=True, capture_output=True)

    def bwrap_args(self) -> list[str]:
        """Bind the views over the capsule's /proc files (after bwrap's `--proc /proc`); none when off."""
        if self.error is not None:
            return []
        args: list[str] = []
        for name in PROC_FILES:
            source = self.mount_dir / "proc" / name
            args += ["--ro-bind", str(source), f"/proc/{name}"]
        return args


def cpuset(vcpus: int, slot_index: int, host_cpus: list[int] | None = None) -> frozenset[int] | None:
    """The host CPUs a capsule of `vcpus` runs on, spread over the host by its slot index so small
    capsules are not all on CPU 0; None (all of them) when it has as many as the host."""
    cpus = sorted(os.sched_getaffinity(0)) if host_cpus is None else host_cpus
    if vcpus >= len(cpus):
        return None
    first = slot_index * vcpus
    return frozenset(cpus[(first + i) % len(cpus)] for i in range(vcpus))
