"""The bubblewrap command line for a capsule (bwrap 0.8: no overlay options, the root is mounted
by the runtime beforehand and bound as /)."""

from __future__ import annotations

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


def bwrap_argv(root: Path, hostname: str, seccomp_fd: int, command: tuple[str, ...] = ENVD_COMMAND) -> list[str]:
    """`root` must be reachable by the capsule's root (host uid `base`): bwrap resolves it after
    joining the capsule's user namespace."""
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
        "--dev",
        "/dev",
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
