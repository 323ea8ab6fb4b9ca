"""The capsule's user namespace: in-capsule uids 0..65535 mapped to a private host range.

Each capsule gets its own range, derived from its network slot index (leased machine-wide, so
two live capsules never share one): host uids `UID_BASE + index * 65536 ...`. Capsule root is
therefore an unprivileged, otherwise unused host uid, and capsule root of one capsule is a
different host uid from any uid of another capsule.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading

from . import kernel

UID_BASE = 1 << 30
UID_RANGE = 65536
HELPER_TIMEOUT = 10.0  # seconds


def host_uid_base(slot_index: int) -> int:
    return UID_BASE + slot_index * UID_RANGE


# One helper fork at a time per process: a fork inherits every fd of the parent, including the
# pipe ends of a concurrent helper, and would keep that helper's pipes open.
_fork_lock = threading.Lock()


def create_userns(base: int, count: int = UID_RANGE) -> int:
    """Return an fd of a new user namespace mapping 0..count-1 to base.. (uids and gids).

    A forked helper unshares its user namespace and waits; root (here) writes its id maps and
    opens the namespace; the helper is released with an explicit byte, not by EOF on the pipe,
    which another fork (of this or any other thread) may still hold open. Safe to call from
    several threads at once."""
    with _fork_lock:
        ready_r, ready_w = os.pipe()
        done_r, done_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: only raw syscalls until _exit
            try:
                os.close(ready_r)
                os.close(done_w)
                kernel.unshare(kernel.CLONE_NEWUSER)
                os.write(ready_w, b"1")
                os.read(done_r, 1)
            finally:
                os._exit(0)
        os.close(ready_w)
        os.close(done_r)
        ready = False
        try:
            readable, _, _ = select.select([ready_r], [], [], HELPER_TIMEOUT)
            ready = bool(readable) and os.read(ready_r, 1) == b"1"
            if not ready:
                raise OSError("could not create a user namespace")
            mapping = f"0 {base} {count}\n"
            for name in ("uid_map", "gid_map"):
                with open(f"/proc/{pid}/{name}", "w") as f:
                    f.write(mapping)
            return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            if not ready:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.write(done_w, b"1")
            os.close(ready_r)
            os.close(done_w)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
