"""The bubblewrap command line for a capsule (bwrap 0.8: no overlay options, the root is mounted
by the runtime beforehand and bound as /)."""

from __future__ import annotations

import os
from pathlib import Path

from wrenn_platform.wire.envd import PORT as ENVD_PORT

BWRAP = "/usr/bin/bwrap"
ENVD_COMMAND = ("/usr/local/bin/wrenn-envd", "--port", str(ENVD_PORT))

# Capabilities capsule root keeps (inside its own user namespace only: they grant nothing over
# host-owned objects such as the slot's netns). Roughly Docker's default set, minus MKNOD/NET_RAW.
CAPSULE_ROOT_CAPS = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_SETFCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_AUDIT_WRITE",
)


def bwrap_argv(root: Path, hostname: str, seccomp_fd: int, shm_bytes: int,
               command: tuple[str, ...] = ENVD_COMMAND, proc_views: tuple[str, ...] = ()) -> list[str]:
    """`root` must be reachable by the capsule's root (host uid `base`): bwrap resolves it after
    joining the capsule's user namespace. `/dev/shm` holds at most `shm_bytes`: its pages are
    charged to the capsule's memory but belong to no process, so no OOM kill would give them back.
    `proc_views`: bwrap options binding the capsule's own /proc files (`procviews.ProcViews`)."""
    argv = [
        BWRAP,
        "--bind",
        str(root),
        "/",
        "--proc",
        "/proc",
        # bwrap 0.8 leaves /proc/sys writable; the kernel checks some sysctls against host uid 0
        # only, so never rely on the user namespace alone.
        "--ro-bind",
        "/proc/sys",
        "/proc/sys",
        *proc_views,
        "--dev",
        "/dev",
        "--perms",
        "1777",  # like any Linux /dev/shm (POSIX shared memory of every user)
        "--size",
        str(shm_bytes),
        "--tmpfs",
        "/dev/shm",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        hostname,
        "--new-session",
        "--chdir",
        "/",
        "--cap-drop",
        "ALL",
    ]
    for cap in CAPSULE_ROOT_CAPS:
        argv += ["--cap-add", cap]
    argv += ["--seccomp", str(seccomp_fd), "--", *command]
    return argv


def args_fd(argv: list[str]) -> tuple[list[str], int]:
    """bwrap's options (everything before `--`) moved into a memfd it reads with `--args`: bwrap
    runs as the capsule's PID 1, and its /proc/1/cmdline would otherwise show the capsule the
    host's paths. The command stays on the command line (bwrap wants it there). Returns the short
    command line and the fd to pass (the caller closes it after the start)."""
    split = argv.index("--")
    fd = os.memfd_create("wrenn-bwrap-args", os.MFD_CLOEXEC)
    os.write(fd, b"".join(arg.encode() + b"\0" for arg in argv[1:split]))
    os.lseek(fd, 0, os.SEEK_SET)
    return [argv[0], "--args", str(fd), *argv[split:]], fd
