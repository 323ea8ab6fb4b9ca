"""Guest operations of one capsule, forwarded to its envd (`envd_client.EnvdClient`) and answered
in the agent's wire models (`wire.agent`, the contract's where they are the same): exec results
with their encoding, the contract's stream messages, PTY sessions, file streams, and `wire.agent`
errors instead of envd's Connect codes.

`on_output` is called for every chunk of process output seen, so output counts as activity.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from pydantic import BaseModel

from wrenn_platform.host_agent.envd_client import (
    EnvdClient,
    EnvdError,
    ProcessEnded,
    ProcessEvent,
    ProcessOutput,
    ProcessStarted,
    PtySize,
)
from wrenn_platform.wire.agent import (
    KILL_PROCESS,
    LIST_DIR,
    LIST_PROCESSES,
    MAKE_DIR,
    REMOVE,
    AgentError,
    AlreadyExists,
    BackgroundExecResponse,
    BadRequest,
    Empty,
    ExecRequest,
    ExecResponse,
    GuestError,
    KillRequest,
    ListDirRequest,
    ListDirResponse,
    MakeDirRequest,
    MakeDirResponse,
    NotFound,
    ProcessEntry,
    ProcessListResponse,
    PtyConnect,
    PtyStart,
    RemoveRequest,
    ResourceExhausted,
    StreamStart,
)

Message = dict[str, Any]

_ERRORS: dict[str, type[AgentError]] = {
    "not_found": NotFound,
    "already_exists": AlreadyExists,
    "invalid_argument": BadRequest,
    "out_of_range": BadRequest,
    "failed_precondition": BadRequest,
    "permission_denied": BadRequest,
    "resource_exhausted": ResourceExhausted,
}


# envd refusing to start a command, as the exit status a shell would give it
_SPAWN_FAILURES = {"not_found": 127, "permission_denied": 126}


def agent_error(exc: EnvdError) -> AgentError:
    return _ERRORS.get(exc.code, GuestError)(exc.message or exc.code)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except EnvdError as exc:
        raise agent_error(exc) from exc


class _Text:
    """Incremental UTF-8 decoding per output stream: a character split across chunks stays whole."""

    def __init__(self) -> None:
        self._decoders: dict[str, codecs.IncrementalDecoder] = {}

    def decode(self, stream: str, data: bytes) -> str:
        dec = self._decoders.setdefault(stream, codecs.getincrementaldecoder("utf-8")(errors="replace"))
        return dec.decode(data)


async def _messages(events: AsyncIterator[ProcessEvent], on_output: Callable[[], None]) -> AsyncIterator[Message]:
    """envd process events as the contract's exec/process stream messages."""
    text = _Text()
    with _translated():
        async for ev in events:
            if isinstance(ev, ProcessStarted):
                yield {"type": "start", "pid": ev.pid}
            elif isinstance(ev, ProcessOutput):
                on_output()
                data = text.decode(ev.stream, ev.data)
                if data:
                    yield {"type": "stderr" if ev.stream == "stderr" else "stdout", "data": data}
            elif isinstance(ev, ProcessEnded):
                yield {"type": "exit", "exit_code": ev.exit_code}
                return


class StreamSession:
    """A process started over the exec stream: iterate for messages, `stop()` kills it."""

    def __init__(self, envd: EnvdClient, events: AsyncGenerator[ProcessEvent, None],
                 on_output: Callable[[], None]) -> None:
        self._envd = envd
        self._events = events
        self._on_output = on_output
        self.pid: int | None = None
        self.exited = False

    async def __aiter__(self) -> AsyncIterator[Message]:
        async for msg in _messages(self._events, self._on_output):
            if msg["type"] == "start":
                self.pid = int(msg["pid"])
            elif msg["type"] == "exit":
                self.exited = True
            yield msg

    async def stop(self) -> None:
        if self.pid is not None and not self.exited:
            with _translated():
                await self._envd.send_signal(self.pid, "SIGKILL")

    async def aclose(self) -> None:
        """The client went away: a streamed exec does not outlive its stream."""
        with contextlib.suppress(AgentError):
            await self.stop()
        await self._events.aclose()


class PtySession:
    def __init__(self, envd: EnvdClient, events: AsyncGenerator[ProcessEvent, None], tag: str, pid: int,
                 on_output: Callable[[], None]) -> None:
        self._envd = envd
        self._events = events
        self._on_output = on_output
        self.tag = tag
        self.pid = pid

    async def __aiter__(self) -> AsyncIterator[Message]:
        with _translated():
            async for ev in self._events:
                if isinstance(ev, ProcessOutput):
                    self._on_output()
                    yield {"type": "output", "data": base64.b64encode(ev.data).decode()}
                elif isinstance(ev, ProcessEnded):
                    yield {"type": "exit", "exit_code": ev.exit_code}
                    return

    async def send_input(self, data: bytes) -> None:
        with _translated():
            await self._envd.send_input(self.pid, data, pty=True)

    async def resize(self, cols: int, rows: int) -> None:
        with _translated():
            await self._envd.resize_pty(self.pid, cols, rows)

    async def kill(self) -> None:
        with _translated():
            await self._envd.send_signal(self.pid, "SIGKILL")

    async def aclose(self) -> None:
        """Detach; the PTY process keeps running and can be reconnected by its tag."""
        await self._events.aclose()


class Guest:
    def __init__(self, capsule_id: str, envd_url: str, access_token: str, on_output: Callable[[], None]) -> None:
        self.capsule_id = capsule_id
        self.envd = EnvdClient(envd_url, access_token)
        self.on_output = on_output

    async def aclose(self) -> None:
        await self.envd.aclose()

    async def run(self, req: ExecRequest) -> ExecResponse:
        """A foreground command: its output, exit code and duration. On timeout envd kills it and
        the result says `timed_out` with the output produced until then."""
        started = time.monotonic()
        try:
            result = await self.envd.run(req.cmd, req.args, envs=req.envs, cwd=req.cwd, user=req.user,
                                         timeout=req.timeout_sec)
            exit_code, stdout, stderr, timed_out = result.exit_code, result.stdout, result.stderr, result.timed_out
        except EnvdError as exc:
            if exc.code not in _SPAWN_FAILURES:  # envd refused to start it
                raise agent_error(exc) from exc
            # A shell's answer, not an API error: 404 would read as "capsule not found".
            exit_code, stdout, stderr, timed_out = _SPAWN_FAILURES[exc.code], b"", f"{exc.message}\n".encode(), False
        duration_ms = int((time.monotonic() - started) * 1000)
        try:
            out, err, encoding = bytes(stdout).decode(), bytes(stderr).decode(), "utf-8"
        except UnicodeDecodeError:
            out, err = base64.b64encode(stdout).decode(), base64.b64encode(stderr).decode()
            encoding = "base64"
        return ExecResponse(sandbox_id=self.capsule_id, cmd=req.cmd, stdout=out, stderr=err, exit_code=exit_code,
                            duration_ms=duration_ms, encoding=encoding, timed_out=timed_out)

    async def start_background(self, req: ExecRequest) -> BackgroundExecResponse:
        tag = req.tag or f"proc-{secrets.token_hex(4)}"
        with _translated():
            info = await self.envd.start_background(req.cmd, req.args, envs=req.envs, cwd=req.cwd,
                                                    user=req.user, tag=tag)
        return BackgroundExecResponse(sandbox_id=self.capsule_id, cmd=req.cmd, pid=info.pid, tag=info.tag or tag)

    async def list_processes(self, _: Empty) -> ProcessListResponse:
        with _translated():
            procs = await self.envd.list_processes()
        return ProcessListResponse(
            processes=[ProcessEntry(pid=p.pid, tag=p.tag or None, cmd=p.cmd, args=p.args) for p in procs])

    async def kill_process(self, req: KillRequest) -> Empty:
        if req.signal not in ("SIGKILL", "SIGTERM"):  # an unvalidated model from in-process code
            raise BadRequest("signal must be SIGKILL or SIGTERM")
        with _translated():
            await self.envd.send_signal(req.selector, req.signal)
        return Empty()

    def connect(self, selector: str) -> AsyncIterator[Message]:
        return _messages(self.envd.connect(selector), self.on_output)

    async def exec_stream(self, start: StreamStart) -> StreamSession:
        events = self.envd.start(start.cmd, start.args, envs=start.envs, cwd=start.cwd, user=start.user,
                                 stdin=False)
        return StreamSession(self.envd, events, self.on_output)

    async def pty(self, first: PtyStart | PtyConnect) -> PtySession:
        if isinstance(first, PtyConnect):
            tag = first.tag
            events = self.envd.connect(tag)
        else:
            tag = f"pty-{secrets.token_hex(4)}"
            envs = {"TERM": "xterm-256color", **first.envs}
            events = self.envd.start(first.cmd, first.args, envs=envs, cwd=first.cwd, user=first.user, tag=tag,
                                     pty=PtySize(first.cols, first.rows), stdin=True)
        try:
            with _translated():
                started = await anext(events)
        except StopAsyncIteration:
            raise GuestError("pty process ended before it started") from None
        if not isinstance(started, ProcessStarted):
            await events.aclose()
            raise GuestError(f"unexpected first pty event {started!r}")
        return PtySession(self.envd, events, tag, started.pid, self.on_output)

    async def read_file(self, path: str) -> AsyncIterator[bytes]:
        chunks = self.envd.download(path)
        try:
            with _translated():
                first = await anext(chunks)
        except StopAsyncIteration:
            first = b""

        async def rest() -> AsyncIterator[bytes]:
            try:
                if first:
                    yield first
                with _translated():
                    async for chunk in chunks:
                        yield chunk
            finally:
                await chunks.aclose()

        return rest()

    async def write_file(self, path: str, chunks: AsyncIterator[bytes]) -> None:
        with _translated():
            await self.envd.write_file(path, chunks)

    async def list_dir(self, req: ListDirRequest) -> ListDirResponse:
        with _translated():
            return ListDirResponse(entries=await self.envd.list_dir(req.path, req.depth))

    async def make_dir(self, req: MakeDirRequest) -> MakeDirResponse:
        with _translated():
            return MakeDirResponse(entry=await self.envd.make_dir(req.path))

    async def remove(self, req: RemoveRequest) -> Empty:
        with _translated():
            await self.envd.remove(req.path)
        return Empty()


# The Guest method answering each of `wire.agent.GUEST_OPS`.
OPERATIONS: dict[str, Callable[[Guest, Any], Awaitable[BaseModel]]] = {
    LIST_PROCESSES.name: Guest.list_processes,
    KILL_PROCESS.name: Guest.kill_process,
    LIST_DIR.name: Guest.list_dir,
    MAKE_DIR.name: Guest.make_dir,
    REMOVE.name: Guest.remove,
}
