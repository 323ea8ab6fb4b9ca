"""One process started by envd: output log, stdin, signals, exit."""

from __future__ import annotations

import os

from . import aio
from .connect import RpcError
from .output import OutputLog
from .spawn import set_winsize

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections import deque
    from typing import Any

    from .spawn import Stdio
else:
    import _signal as signal  # `signal` wraps these in enums (an `enum` import at start)
    from _collections import deque  # `collections` costs start-up

READ_SIZE = 1024 * 1024
FINISHED_OUTPUT_KEPT = 1024 * 1024  # replayable after exit (the record lives on for a minute)
EXIT_DRAIN_GRACE = 0.3  # how long output may keep flowing after exit (held by a grandchild)


class Process:
    """A started process (see spawn.py), from the moment its pid is known."""

    def __init__(
        self,
        *,
        cmd: str,
        args: list[str],
        envs: dict[str, str],
        cwd: str,
        tag: str,
        pid: int,
        stdio: Stdio,
        output_bound: int,
    ) -> None:
        self.cmd = cmd
        self.args = args
        self.envs = envs
        self.cwd = cwd
        self.tag = tag
        self.is_pty = stdio.pty
        self.pid = pid
        self.exit_status: int | None = None
        self.exit_event = aio.Event()  # output drained and status known
        self.log = OutputLog(output_bound, self._pressure)
        self.last_activity = aio.get_running_loop().time()
        self.attached = 0  # live streams (Start/Connect) watching this process
        self._loop = aio.get_running_loop()
        self._readers = dict(stdio.readers)  # fd -> stream name
        self._stdin_fd = stdio.stdin_fd
        self._stdin_pending: deque[bytes] = deque()
        self._stdin_drained: aio.Event = aio.Event()
        self._stdin_drained.set()
        self._stdin_close_when_drained = False
        self._last_read = 0.0
        for fd in self._readers:
            self._loop.add_reader(fd, self._on_readable, fd)

    # -- output -----------------------------------------------------------------------------

    def _on_readable(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO from a PTY master once the terminal side is gone
            data = b""
        if not data:
            self._close_reader(fd)
            return
        self._last_read = self._loop.time()
        self.log.append(self._readers[fd], data)

    def _close_reader(self, fd: int) -> None:
        if fd not in self._readers:
            return
        self._loop.remove_reader(fd)
        del self._readers[fd]
        if fd == self._stdin_fd:  # a terminal: input may be waiting on the same fd
            self._loop.remove_writer(fd)
            self._stdin_fd = None
            self._stdin_drained.set()
        os.close(fd)
        self._maybe_finish()

    def _pressure(self, paused: bool) -> None:
        for fd in self._readers:
            if paused:
                self._loop.remove_reader(fd)
            else:
                self._loop.add_reader(fd, self._on_readable, fd)

    # -- exit -------------------------------------------------------------------------------

    def on_exit(self, status: int) -> None:
        """Called by the reaper with the raw wait status."""
        self.exit_status = status
        self._last_read = self._loop.time()
        self._loop.call_later(0.05 if self.is_pty else EXIT_DRAIN_GRACE, self._drain_after_exit)
        self._maybe_finish()

    def _drain_after_exit(self) -> None:
        """Output pipes still open after exit are held by a grandchild: stop once they go quiet."""
        if not self._readers:
            return
        if self._loop.time() - self._last_read < EXIT_DRAIN_GRACE:
            self._loop.call_later(EXIT_DRAIN_GRACE, self._drain_after_exit)
            return
        for fd in list(self._readers):
            while True:
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                if not data:
                    break
                self.log.append(self._readers[fd], data)
            self._close_reader(fd)
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.exit_status is None or self._readers or self.exit_event.is_set():
            return
        if self._stdin_fd is not None:
            self._loop.remove_writer(self._stdin_fd)
            os.close(self._stdin_fd)
            self._stdin_fd = None
        self._stdin_drained.set()
        self.log.close(keep=FINISHED_OUTPUT_KEPT)
        self.exit_event.set()

    @property
    def running(self) -> bool:
        return self.exit_status is None

    def end_message(self) -> dict[str, Any]:
        status = self.exit_status or 0
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            name = (signal.strsignal(sig) or f"signal {sig}").lower()
            return {"exitCode": -1, "exited": False, "status": f"signal: {name}"}
        code = os.WEXITSTATUS(status)
        return {"exitCode": code, "exited": True, "status": f"exit status {code}"}

    # -- control ----------------------------------------------------------------------------

    def signal(self, sig: int) -> None:
        if not self.running:
            raise RpcError("not_found", f"process {self.pid} has already exited")
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                raise RpcError("not_found", f"process {self.pid} has already exited") from None

    def resize(self, cols: int, rows: int) -> None:
        if not self.is_pty or self._stdin_fd is None:
            raise RpcError("failed_precondition", "process has no terminal")
        if not (0 < cols <= 10000 and 0 < rows <= 10000):
            raise RpcError("invalid_argument", "cols and rows must be between 1 and 10000")
        set_winsize(self._stdin_fd, cols, rows)
        self.touch()

    def touch(self) -> None:
        self.last_activity = self._loop.time()

    async def write_input(self, data: bytes) -> None:
        if self._stdin_fd is None or self._stdin_close_when_drained:
            raise RpcError("failed_precondition", "stdin is closed")
        self.touch()
        if not data:
            return
        self._stdin_pending.append(data)
        if self._stdin_drained.is_set():
            self._stdin_drained.clear()
            self._flush_stdin()
        await self._stdin_drained.wait()
        if self._stdin_fd is None and self._stdin_pending:
            raise RpcError("failed_precondition", "stdin was closed by the process")

    def _flush_stdin(self) -> None:
        fd = self._stdin_fd
        while fd is not None and self._stdin_pending:
            data = self._stdin_pending[0]
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                self._loop.add_writer(fd, self._flush_stdin)
                return
            except OSError:  # EPIPE: the process closed its stdin
                self._close_stdin_fd()
                self._stdin_drained.set()
                return
            if written < len(data):
                self._stdin_pending[0] = data[written:]
            else:
                self._stdin_pending.popleft()
        if fd is not None:
            self._loop.remove_writer(fd)
        self._stdin_drained.set()
        if self._stdin_close_when_drained:
            self._close_stdin_fd()

    def _close_stdin_fd(self) -> None:
        fd = self._stdin_fd
        if fd is None or self.is_pty:
            return
        self._loop.remove_writer(fd)
        self._stdin_fd = None
        os.close(fd)

    def close_stdin(self) -> None:
        if self.is_pty:
            raise RpcError("failed_precondition", "a terminal has no separate stdin to close")
        if self._stdin_fd is None:
            return
        self._stdin_close_when_drained = True
        if self._stdin_drained.is_set():
            self._close_stdin_fd()

    def info(self) -> dict[str, Any]:
        config: dict[str, Any] = {"cmd": self.cmd, "args": self.args, "envs": self.envs, "cwd": self.cwd}
        return {"config": config, "pid": self.pid, "tag": self.tag}
