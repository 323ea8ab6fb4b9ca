"""The QEMU process: start it confined, tell whether it lives, stop it, read its usage."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..namespace import cgroups
from . import qemu

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class VmProcess:
    pid: int
    popen: subprocess.Popen[bytes] | None  # None when adopted from a previous agent

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    return True
            # A zombie leader can outlive its other threads' exit, and they share the fd table
            # (the TAP stays attached): dead only once they are gone too.
            return len(os.listdir(f"/proc/{self.pid}/task")) > 1
        except OSError:
            return False

    async def kill(self, limit_s: float = 5.0) -> None:
        if not self.alive():
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        await self.wait(limit_s)

    async def wait(self, limit_s: float) -> bool:
        deadline = time.monotonic() + limit_s
        delay = 0.001
        while self.alive():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)
        return True


def start(cfg: qemu.VmConfig, log_path: Path, procs_files: list[str]) -> VmProcess:
    """Start QEMU confined, born inside the cgroup whose `cgroup.procs` files are given."""
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            qemu.confined_argv(cfg),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(cfg.tap_fd,),
            start_new_session=True,  # outlives an agent restart; `adopt` finds it again
            close_fds=True,
            preexec_fn=functools.partial(cgroups.enter, procs_files),
        )
    return VmProcess(popen.pid, popen)


def is_capsule_vm(pid: int, capsule_id: str) -> bool:
    """Whether `pid` is the QEMU of `capsule_id` (guards against pid reuse after a reboot)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"wrenn-{capsule_id},process=wrenn-vm".encode() in cmdline


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLK_TCK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
