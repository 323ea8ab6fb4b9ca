"""Starting a process: its stdio (pipes or a terminal), working directory, environment and exec.

`subprocess` uses vfork() only when the child needs no preexec_fn and no user, group or groups
change; otherwise it forks envd, copying its page tables (and making every page envd touches
afterwards fault once). So a process of another user is not started by asking `subprocess` to
switch users: it is started from one of that user's identity threads (users.py), whose own real
and effective ids and groups are already the user's, and a vforked child inherits the calling
thread's credentials. Only a terminal still needs a preexec_fn (TIOCSCTTY), hence a fork.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time

from .aio import suppress
from .connect import RpcError, from_os_error
from .output import PTY, STDERR, STDOUT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .users import User

PIPE_SIZE = 1024 * 1024
# What envd starts is the OOM killer's first choice (it picks among them by size), envd itself the
# last: its death ends the capsule, and memory no process owns (tmpfs pages) made it the largest.
# Raising needs no privilege (lowering envd would need CAP_SYS_RESOURCE in the host's user
# namespace). Set after the start, because a vforked child runs no Python (what the child forked
# before that inherited envd's 0, so its descendants are set too), and by envd's own thread: a
# process just started may not be dumpable yet, its /proc files then owned by root.
OOM_SCORE_ADJ_CHILD = b"1000"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# termios is imported on first PTY use: most capsules never open one.
def set_winsize(fd: int, cols: int, rows: int) -> None:
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _controlling_tty_taker() -> Callable[[], None]:
    """The child's pre-exec step, its constant looked up before the fork (no import in a child)."""
    import termios

    request = termios.TIOCSCTTY

    def take() -> None:
        fcntl.ioctl(0, request, 0)

    return take


class Stdio:
    """The child's ends (to pass to it, then close here) and envd's ends (fd -> stream name)."""

    def __init__(self, pty_size: tuple[int, int] | None, stdin: bool) -> None:
        self.child: list[int] = []
        self.readers: dict[int, str] = {}
        self.stdin_fd: int | None = None
        self.pty = pty_size is not None
        try:
            if pty_size is not None:
                master, slave = os.openpty()
                self.child = [slave]
                self.readers[master] = PTY
                self.stdin_fd = master
                set_winsize(master, *pty_size)
                os.set_blocking(master, False)
                return
            if stdin:
                read_end, write_end = os.pipe2(os.O_CLOEXEC)
                self.child.append(read_end)
                self.stdin_fd = write_end
                os.set_blocking(write_end, False)
            for stream in (STDOUT, STDERR):
                read_end, write_end = os.pipe2(os.O_CLOEXEC)
                self.child.append(write_end)
                self.readers[read_end] = stream
                with suppress(OSError):
                    fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
                os.set_blocking(read_end, False)
        except BaseException:
            self.close_all()
            raise

    def close_child_ends(self) -> None:
        for fd in self.child:
            os.close(fd)
        self.child = []

    def close_all(self) -> None:
        self.close_child_ends()
        for fd in [*self.readers, *([self.stdin_fd] if self.stdin_fd is not None else [])]:
            with suppress(OSError):
                os.close(fd)
        self.readers = {}
        self.stdin_fd = None


def _resolve_cwd(cwd: str | None, default_workdir: str | None, user: User) -> str:
    """The working directory, checked with the calling thread's identity (the user's)."""
    if not cwd:
        cwd = default_workdir or user.home
        if not os.path.isdir(cwd):
            cwd = "/"
    elif not os.path.isabs(cwd):
        cwd = os.path.join(user.home, cwd)
    try:
        os.stat(os.path.join(cwd, "."))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise RpcError("invalid_argument", f"cwd {cwd!r} does not exist") from None
        if exc.errno == errno.ENOTDIR:
            raise RpcError("invalid_argument", f"cwd {cwd!r} is not a directory") from None
        raise from_os_error(exc, f"cwd {cwd!r}") from None
    return cwd


def environment(
    user: User, base_env: dict[str, str], envs: dict[str, str], cwd: str, pty: bool
) -> dict[str, str]:
    env = {
        "PATH": DEFAULT_PATH,
        **base_env,
        "HOME": user.home,
        "USER": user.name,
        "LOGNAME": user.name,
        "SHELL": user.shell,
        "PWD": cwd,
    }
    if pty:
        env["TERM"] = "xterm-256color"
    env.update(envs)
    return env


def start(
    argv: list[str],
    cwd: str | None,
    default_workdir: str | None,
    user: User,
    base_env: dict[str, str],
    envs: dict[str, str],
    stdio: Stdio,
) -> tuple[int, str]:
    """Exec `argv` with the calling thread's identity; returns (pid, cwd). Blocking but short."""
    import subprocess  # imported on first use (or by the warm-up after the first request)

    cwd = _resolve_cwd(cwd, default_workdir, user)
    env = environment(user, base_env, envs, cwd, stdio.pty)
    if stdio.pty:
        (slave,) = stdio.child
        streams = {"stdin": slave, "stdout": slave, "stderr": slave}
        extra: dict[str, object] = {"preexec_fn": _controlling_tty_taker()}
    else:
        ends = list(stdio.child)
        stdin = ends.pop(0) if len(ends) == 3 else subprocess.DEVNULL
        streams = {"stdin": stdin, "stdout": ends[0], "stderr": ends[1]}
        extra = {}
    try:
        popen = subprocess.Popen(
            argv, cwd=cwd, env=env, close_fds=True, start_new_session=True, **streams, **extra  # type: ignore[call-overload]
        )
    except FileNotFoundError:
        raise RpcError("not_found", f"executable {argv[0]!r} not found") from None
    except PermissionError:
        raise RpcError("permission_denied", f"executable {argv[0]!r}: permission denied") from None
    except OSError as exc:
        raise from_os_error(exc, f"cannot start {argv[0]!r}") from None
    # The reaper owns waitpid; mark the Popen finished so it never waits on its own.
    popen.returncode = 0
    return popen.pid, cwd


def expose_to_oom(pid: int) -> None:
    """Make a started process, and what it already forked, the OOM killer's pick before envd.
    Its descendants are in its session (it was started with setsid) and, pids being handed out in
    increasing order, newer than it: only those entries of /proc are read."""
    _write_oom_score_adj(pid)
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit() or int(entry) <= pid:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:  # already gone
            continue
        if int(fields[3]) == pid:  # state, ppid, pgrp, session
            _write_oom_score_adj(int(entry))


def _write_oom_score_adj(pid: int) -> None:
    # A child switching to another user is briefly not dumpable: its /proc files then belong to the
    # init namespace's root and refuse us (EACCES) until its exec completes, which takes well under
    # 10 ms. Without this wait, one first exec in ten failed with PermissionError under load.
    for _ in range(50):
        try:
            fd = os.open(f"/proc/{pid}/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
        except PermissionError:
            time.sleep(0.0002)
            continue
        except OSError:  # already gone
            return
        try:
            os.write(fd, OOM_SCORE_ADJ_CHILD)
            return
        except PermissionError:
            time.sleep(0.0002)
        except ProcessLookupError:
            return
        finally:
            os.close(fd)
