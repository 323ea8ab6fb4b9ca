"""The `process.Process` Connect service."""

from __future__ import annotations

import binascii
import struct

from . import aio
from .connect import (
    RpcError,
    b64decode,
    b64encode,
    end_stream,
    envelope,
    read_envelope,
    start_stream,
    wants_raw_output,
)
from .httpio import Request, Response
from .manager import ProcessManager
from .process import Process
from .protocol import CONNECT_JSON, CONNECT_RAW_OUTPUT, RAW_OUTPUT, RAW_STREAM_IDS
from .state import AgentState

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from typing import Any
else:
    import _signal as signal  # `signal` wraps these in enums (an `enum` import at start)

MAX_EVENT_BYTES = 1024 * 1024
DEFAULT_KEEPALIVE = 30.0

_SIGNALS = {
    "SIGNAL_SIGTERM": signal.SIGTERM,
    "SIGNAL_SIGKILL": signal.SIGKILL,
    15: signal.SIGTERM,
    9: signal.SIGKILL,
}


def _b64(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise RpcError("invalid_argument", f"{field} must be base64 bytes")
    try:
        return b64decode(value)
    except binascii.Error:
        raise RpcError("invalid_argument", f"{field} is not valid base64") from None


def _str_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise RpcError("invalid_argument", f"{field} must be a list of strings")
    return value


def _str_map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise RpcError("invalid_argument", f"{field} must map strings to strings")
    return value


def _pty_size(pty: Any) -> tuple[int, int]:
    size = pty.get("size") if isinstance(pty, dict) else None
    if not isinstance(size, dict):
        raise RpcError("invalid_argument", "pty.size (cols, rows) is required")
    try:
        cols, rows = int(size.get("cols", 0)), int(size.get("rows", 0))
    except (TypeError, ValueError):
        raise RpcError("invalid_argument", "pty.size cols and rows must be integers") from None
    if not (0 < cols <= 10000 and 0 < rows <= 10000):
        raise RpcError("invalid_argument", "pty.size cols and rows must be between 1 and 10000")
    return cols, rows


_PREFIX = {name: b'{"event":{"data":{"' + name.encode() + b'":"' for name in ("stdout", "stderr", "pty")}
_SUFFIX = b'"}}}'


def _raw_event(stream: str, parts: list[bytes]) -> list[bytes]:
    """An output event in the negotiated raw form: the pieces are sent as they are, not joined."""
    length = 1 + sum(len(part) for part in parts)
    return [struct.pack(">BIB", RAW_OUTPUT, length, RAW_STREAM_IDS[stream]), *parts]


def _data_event(stream: str, data: bytes) -> list[bytes]:
    """A data event as pieces (header, prefix, base64, suffix) so the big one is never copied."""
    encoded = b64encode(data)
    prefix = _PREFIX[stream]
    length = len(prefix) + len(encoded) + len(_SUFFIX)
    return [struct.pack(">BI", 0, length) + prefix, encoded, _SUFFIX]


def _timeout_seconds(request: Request) -> float | None:
    raw = request.headers.get("connect-timeout-ms")
    if not raw:
        return None
    try:
        return max(0.0, int(raw) / 1000)
    except ValueError:
        raise RpcError("invalid_argument", "bad Connect-Timeout-Ms header") from None


def _keepalive_seconds(request: Request) -> float:
    raw = request.headers.get("keepalive-ping-interval")
    try:
        return max(1.0, float(raw)) if raw else DEFAULT_KEEPALIVE
    except ValueError:
        return DEFAULT_KEEPALIVE


async def _start_output_stream(request: Request, response: Response) -> None:
    raw = wants_raw_output(request)
    await start_stream(response, CONNECT_RAW_OUTPUT if raw else CONNECT_JSON)


async def _cancel(task: aio.Future) -> None:
    task.cancel()
    await aio.gather(task, return_exceptions=True)


class ProcessService:
    def __init__(self, manager: ProcessManager, state: AgentState) -> None:
        self.manager = manager
        self.state = state

    # -- streaming --------------------------------------------------------------------------

    async def start(self, request: Request, response: Response) -> None:
        await _start_output_stream(request, response)
        try:
            message = await read_envelope(request) or {}
            deadline = _timeout_seconds(request)
            user = self.state.request_user(request.headers.get("authorization"))
            config = message.get("process")
            if not isinstance(config, dict):
                raise RpcError("invalid_argument", "process (cmd, args, envs, cwd) is required")
            pty = message.get("pty")
            cmd = config.get("cmd") or ("/bin/bash" if pty is not None else None)
            if not isinstance(cmd, str) or not cmd:
                raise RpcError("invalid_argument", "process.cmd is required")
            pty_size = _pty_size(pty) if pty is not None else None
            tag = message.get("tag")
            if tag is not None and not isinstance(tag, str):
                raise RpcError("invalid_argument", "tag must be a string")
            stdin = message.get("stdin")
            process = await self.manager.start(
                cmd=cmd,
                args=_str_list(config.get("args"), "process.args"),
                envs=_str_map(config.get("envs"), "process.envs"),
                cwd=config.get("cwd") or None,
                user=user,
                base_env=self.state.env_vars,
                default_workdir=self.state.default_workdir,
                tag=tag,
                pty_size=pty_size,
                stdin=True if stdin is None else bool(stdin),
            )
        except RpcError as exc:
            await response.end(end_stream(exc))
            return
        await self._follow(process, request, response, deadline)

    async def connect(self, request: Request, response: Response) -> None:
        await _start_output_stream(request, response)
        try:
            message = await read_envelope(request) or {}
            deadline = _timeout_seconds(request)
            process = self.manager.select(message.get("process"), finished_too=True)
        except RpcError as exc:
            await response.end(end_stream(exc))
            return
        await self._follow(process, request, response, deadline, kill_at_deadline=False)

    async def _follow(
        self,
        process: Process,
        request: Request,
        response: Response,
        deadline: float | None,
        kill_at_deadline: bool = True,
    ) -> None:
        """Stream a process's events: start, everything kept in its log, then live, then end.

        At the deadline a `Start` stream kills the process (then ends with its end event); a
        `Connect` stream just ends, `deadline_exceeded`, and the process runs on (as E2B's envd)."""
        reader = process.log.open_reader()
        process.attached += 1
        process.touch()
        loop = aio.get_running_loop()
        keepalive = _keepalive_seconds(request)
        expires = loop.time() + deadline if deadline is not None else None
        timed_out = False
        raw = wants_raw_output(request)
        disconnected = aio.ensure_future(request.wait_disconnect())
        try:
            await response.write(envelope({"event": {"start": {"pid": process.pid}}}))
            while True:
                wait = keepalive
                if expires is not None and not timed_out:
                    wait = min(wait, max(0.0, expires - loop.time()))
                read = aio.ensure_future(process.log.read(reader, MAX_EVENT_BYTES))
                done, _ = await aio.wait(
                    {read, disconnected}, timeout=wait, return_when=aio.FIRST_COMPLETED
                )
                if disconnected in done:
                    await _cancel(read)
                    response.keep_alive = False
                    return
                if read not in done:
                    await _cancel(read)
                    if expires is not None and not timed_out and loop.time() >= expires:
                        timed_out = True
                        if not kill_at_deadline:
                            await _cancel(disconnected)
                            await response.end(end_stream(
                                RpcError("deadline_exceeded", f"stream ended after the {deadline:g} s timeout")))
                            return
                        if process.running:
                            process.signal(signal.SIGKILL)
                    else:
                        await response.write(envelope({"event": {"keepalive": {}}}))
                    continue
                chunks = read.result()
                if chunks is None:
                    break
                await response.write_parts(self._coalesce(chunks, raw))
            # Stop watching the socket before the last write: after it, the client may send its
            # next request on this connection, which the watcher must not swallow.
            await _cancel(disconnected)
            await process.exit_event.wait()
            error = (
                RpcError("deadline_exceeded", f"process killed after the {deadline:g} s timeout")
                if timed_out
                else None
            )
            end = envelope({"event": {"end": process.end_message()}})
            await response.end(end + end_stream(error))
        except (ConnectionError, RuntimeError):
            response.keep_alive = False
        finally:
            await _cancel(disconnected)
            process.attached -= 1
            process.touch()
            process.log.close_reader(reader)

    @staticmethod
    def _coalesce(chunks: list[tuple[str, bytes]], raw: bool = False) -> list[bytes]:
        """Consecutive chunks of one stream become one event (fewer, larger messages)."""
        out: list[bytes] = []
        stream, size = chunks[0][0], 0
        parts: list[bytes] = []
        for name, data in chunks:
            if parts and (name != stream or size + len(data) > MAX_EVENT_BYTES):
                out.extend(_raw_event(stream, parts) if raw else _data_event(stream, b"".join(parts)))
                stream, parts, size = name, [], 0
            stream = name
            parts.append(data)
            size += len(data)
        out.extend(_raw_event(stream, parts) if raw else _data_event(stream, b"".join(parts)))
        return out

    async def stream_input(self, request: Request, response: Response) -> None:
        await start_stream(response)
        try:
            process: Process | None = None
            while True:
                message = await read_envelope(request)
                if message is None:
                    break
                if "start" in message:
                    start = message["start"] or {}
                    process = self.manager.select(start.get("process"))
                elif "data" in message:
                    if process is None:
                        raise RpcError("failed_precondition", "send a start message first")
                    await self._write_input(process, (message["data"] or {}).get("input"))
            await response.write(envelope({}))
            await response.write(end_stream())
        except RpcError as exc:
            await response.write(end_stream(exc))
            response.keep_alive = False
        await response.end()

    # -- unary ------------------------------------------------------------------------------

    async def _write_input(self, process: Process, data: Any) -> None:
        if not isinstance(data, dict):
            raise RpcError("invalid_argument", "input (stdin or pty bytes) is required")
        if "pty" in data:
            if not process.is_pty:
                raise RpcError("failed_precondition", "process has no terminal; send stdin")
            await process.write_input(_b64(data["pty"], "input.pty"))
        elif "stdin" in data:
            if process.is_pty:
                raise RpcError("failed_precondition", "process runs in a terminal; send pty input")
            await process.write_input(_b64(data["stdin"], "input.stdin"))
        else:
            raise RpcError("invalid_argument", "input (stdin or pty bytes) is required")

    async def send_input(self, message: dict[str, Any], request: Request) -> dict[str, Any]:
        process = self.manager.select(message.get("process"))
        await self._write_input(process, message.get("input"))
        return {}

    async def send_signal(self, message: dict[str, Any], request: Request) -> dict[str, Any]:
        process = self.manager.select(message.get("process"))
        sig = _SIGNALS.get(message.get("signal"))
        if sig is None:
            raise RpcError("invalid_argument", "signal must be SIGNAL_SIGTERM or SIGNAL_SIGKILL")
        process.signal(sig)
        return {}

    async def update(self, message: dict[str, Any], request: Request) -> dict[str, Any]:
        process = self.manager.select(message.get("process"))
        cols, rows = _pty_size(message.get("pty"))
        process.resize(cols, rows)
        return {}

    async def close_stdin(self, message: dict[str, Any], request: Request) -> dict[str, Any]:
        process = self.manager.select(message.get("process"))
        process.close_stdin()
        return {}

    async def list(self, message: dict[str, Any], request: Request) -> dict[str, Any]:
        return {"processes": [p.info() for p in self.manager.list()]}

