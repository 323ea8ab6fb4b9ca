"""The process table: spawning with validation, selection by pid or tag, the zombie reaper.

envd may run as PID 1, so it reaps every child (`waitpid(-1)`), not only its own.
"""

from __future__ import annotations

import os

from . import aio, spawn
from .aio import suppress
from .connect import RpcError, from_os_error
from .process import Process
from .spawn import Stdio
from .users import FsIdentities, User

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from typing import Any
else:
    import _signal as signal  # `signal` wraps these in enums (an `enum` import at start)

FINISHED_KEEP_SECONDS = 60.0


class ProcessManager:
    def __init__(
        self,
        fs: FsIdentities,
        output_bound: int = 8 * 1024 * 1024,
        pty_idle_timeout: float = 600.0,
    ) -> None:
        self._fs = fs
        self._output_bound = output_bound
        self._pty_idle_timeout = pty_idle_timeout
        self._running: dict[int, Process] = {}
        self._finished: dict[int, Process] = {}
        self._unclaimed: dict[int, int] = {}  # statuses reaped before their Process was known
        self._idle_task: aio.Task | None = None
        self._starting: set[str] = set()  # tags of processes being spawned
        self._subreaper = False

    def become_subreaper(self) -> None:
        """Adopt orphaned grandchildren so they are reaped even when envd is not PID 1."""
        if self._subreaper:
            return
        self._subreaper = True
        if os.getpid() == 1:
            return
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        except (OSError, AttributeError):
            pass

    def start_reaper(self) -> None:
        loop = aio.get_running_loop()
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self._idle_task = loop.create_task(self._watch_idle_ptys())
        self.reap()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            process = self._running.pop(pid, None)
            if process is None:
                self._unclaimed[pid] = status
                if len(self._unclaimed) > 1024:
                    self._unclaimed.pop(next(iter(self._unclaimed)))
                continue
            self._finish(process, status)

    def _finish(self, process: Process, status: int) -> None:
        process.on_exit(status)
        self._finished[process.pid] = process
        aio.get_running_loop().call_later(
            FINISHED_KEEP_SECONDS, self._forget, process.pid, process
        )

    def _forget(self, pid: int, process: Process) -> None:
        if self._finished.get(pid) is process:
            del self._finished[pid]

    async def start(
        self,
        *,
        cmd: str,
        args: list[str],
        envs: dict[str, str],
        cwd: str | None,
        user: User,
        base_env: dict[str, str],
        default_workdir: str | None,
        tag: str | None,
        pty_size: tuple[int, int] | None,
        stdin: bool,
    ) -> Process:
        if not cmd:
            raise RpcError("invalid_argument", "cmd is required")
        if tag is None or tag == "":
            tag = "proc-" + os.urandom(4).hex()
        elif tag in self._starting or any(p.tag == tag for p in self._running.values()):
            raise RpcError("already_exists", f"a running process already has tag {tag!r}")
        self.become_subreaper()
        try:
            stdio = Stdio(pty_size, stdin)
        except OSError as exc:
            raise from_os_error(exc, f"cannot start {cmd!r}") from None
        self._starting.add(tag)
        try:
            pid, workdir = await self._fs.spawn(
                user, spawn.start, [cmd, *args], cwd, default_workdir, user, base_env, envs, stdio
            )
        except BaseException:
            stdio.close_all()
            raise
        finally:
            self._starting.discard(tag)
            stdio.close_child_ends()
        spawn.expose_to_oom(pid)
        process = Process(
            cmd=cmd, args=args, envs=envs, cwd=workdir, tag=tag, pid=pid, stdio=stdio, output_bound=self._output_bound
        )
        self._running[process.pid] = process
        status = self._unclaimed.pop(process.pid, None)
        if status is not None:
            del self._running[process.pid]
            self._finish(process, status)
        return process

    def select(self, selector: Any, *, finished_too: bool = False) -> Process:
        if not isinstance(selector, dict):
            raise RpcError("invalid_argument", "process selector (pid or tag) is required")
        pid = selector.get("pid")
        tag = selector.get("tag")
        pools = [self._running, self._finished] if finished_too else [self._running]
        if pid not in (None, 0, ""):
            try:
                pid = int(pid)
            except (TypeError, ValueError):
                raise RpcError("invalid_argument", "pid must be an integer") from None
            for pool in pools:
                if pid in pool:
                    return pool[pid]
            raise RpcError("not_found", f"process with pid {pid} not found")
        if tag:
            for pool in pools:
                for process in pool.values():
                    if process.tag == tag:
                        return process
            raise RpcError("not_found", f"process with tag {tag!r} not found")
        raise RpcError("invalid_argument", "process selector (pid or tag) is required")

    def list(self) -> list[Process]:
        return sorted(self._running.values(), key=lambda p: p.pid)

    async def _watch_idle_ptys(self) -> None:
        loop = aio.get_running_loop()
        while True:
            await aio.sleep(min(5.0, max(0.2, self._pty_idle_timeout / 4)))
            now = loop.time()
            for process in list(self._running.values()):
                if (
                    process.is_pty
                    and process.attached == 0
                    and now - process.last_activity > self._pty_idle_timeout
                ):
                    with suppress(RpcError):
                        process.signal(signal.SIGKILL)

    def shutdown(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
        for process in list(self._running.values()):
            with suppress(RpcError):
                process.signal(signal.SIGKILL)
