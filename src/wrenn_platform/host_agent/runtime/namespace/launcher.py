"""Starting bwrap inside the slot netns, the capsule's cgroups and user namespace.

Runs in the forked child before exec (no Python-level locks are taken there: only syscalls and
writes to pre-computed paths):
1. join the slot's network namespace (owned by the host's user namespace, so capsule root has no
   CAP_NET_ADMIN over it: it cannot change its address, routes or firewall);
2. set per-netns sysctls (IPv6 off, unprivileged ports and ping from 0: capsule root has no
   CAP_NET_BIND_SERVICE over a host-owned netns);
3. enter every cgroup, so each process of the capsule is born inside;
4. bound open files per process (RLIMIT_NOFILE, soft = hard), inherited by everything in the capsule;
5. join the capsule's user namespace and become uid/gid 0 there (a private unprivileged host uid).
bwrap then runs as root of that user namespace and creates the pid, mount, ipc, uts (and cgroup)
namespaces, which that user namespace owns.
"""

from __future__ import annotations

import os
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path

from . import cgroups, kernel

NETNS_SYSCTLS = {
    "/proc/sys/net/ipv6/conf/all/disable_ipv6": "1",
    "/proc/sys/net/ipv6/conf/default/disable_ipv6": "1",
    "/proc/sys/net/ipv4/ip_unprivileged_port_start": "0",
    "/proc/sys/net/ipv4/ping_group_range": "0 2147483647",
}


def _preexec(netns_fd: int, userns_fd: int, procs_files: list[str], nofile_max: int) -> Callable[[], None]:
    def run() -> None:
        kernel.setns(netns_fd, kernel.CLONE_NEWNET)
        for path, value in NETNS_SYSCTLS.items():
            try:
                fd = os.open(path, os.O_WRONLY)
            except FileNotFoundError:
                continue
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
        cgroups.enter(procs_files)
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile_max, nofile_max))
        kernel.setns(userns_fd, kernel.CLONE_NEWUSER)
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)

    return run


def launch(
    argv: list[str],
    *,
    netns: Path,
    userns_fd: int,
    procs_files: list[str],
    env: dict[str, str],
    pass_fds: tuple[int, ...],
    log_path: Path,
    nofile_max: int,
) -> subprocess.Popen[bytes]:
    """Start the capsule's bwrap in its own session (it outlives the agent)."""
    netns_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                pass_fds=pass_fds,
                start_new_session=True,
                preexec_fn=_preexec(netns_fd, userns_fd, procs_files, nofile_max),
                cwd="/",
            )
    finally:
        os.close(netns_fd)
    # The capsule is tracked by its cgroup; the handle only serves to reap bwrap on destroy.
    return proc
