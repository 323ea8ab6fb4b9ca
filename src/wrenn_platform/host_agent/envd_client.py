"""The host agent's client for envd, the agent inside every capsule.

Every call the host agent or control plane makes into a capsule goes through `EnvdClient`:
Connect RPC with the JSON codec (`process.Process`, `filesystem.Filesystem`), and plain HTTP for
`/files`, `/init`, `/health`, `/metrics`. The protocol is described in `docs/envd-protocol.md`.

    async with EnvdClient("http://10.11.0.2:49983", access_token=token) as envd:
        result = await envd.run("echo", ["hi"], timeout=10)
        async for event in envd.start("sleep", ["100"], tag="web"):
            ...
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import struct
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpcore
import httpx

from wrenn_platform.host_agent.envd_http import StreamBroken, StreamPool, StreamTimeout

DEFAULT_PORT = 49983
CONNECT_JSON = "application/connect+json"
# Negotiated through `Accept` on process streams (see docs/envd-protocol.md): output events come
# as RAW_OUTPUT envelopes (a stream-id byte, then the bytes), sparing base64 on both sides.
CONNECT_RAW_OUTPUT = "application/x-wrenn-connect-raw"
RAW_OUTPUT = 0x80
_RAW_STREAMS: dict[int, Stream] = {1: "stdout", 2: "stderr", 3: "pty"}
KEEPALIVE_INTERVAL = 15.0  # seconds between envd's keepalive events on a stream

Selector = int | str
Stream = Literal["stdout", "stderr", "pty"]
SignalName = Literal["SIGTERM", "SIGKILL"]


class EnvdError(Exception):
    """A call envd refused or could not complete. `code` is a Connect code (`not_found`, ...)."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class EnvdUnavailable(EnvdError):
    """envd could not be reached (connection refused, reset, timed out)."""

    def __init__(self, message: str) -> None:
        super().__init__("unavailable", message)


# -- values -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PtySize:
    cols: int
    rows: int


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    tag: str
    cmd: str
    args: list[str]
    envs: dict[str, str]
    cwd: str | None


@dataclass(frozen=True, slots=True)
class ProcessStarted:
    pid: int


@dataclass(frozen=True, slots=True)
class ProcessOutput:
    stream: Stream
    data: bytes


@dataclass(frozen=True, slots=True)
class ProcessEnded:
    exit_code: int  # -1 when killed by a signal
    exited: bool  # False when killed by a signal
    status: str  # "exit status 3", "signal: killed"
    error: str | None = None


ProcessEvent = ProcessStarted | ProcessOutput | ProcessEnded


@dataclass(slots=True)
class CommandResult:
    pid: int
    exit_code: int
    exited: bool
    status: str
    stdout: bytes = b""
    stderr: bytes = b""


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """One filesystem entry; the fields of the Wrenn API's `FileEntry`."""

    name: str
    path: str
    type: Literal["file", "directory", "symlink"]
    size: int
    mode: int
    permissions: str
    owner: str
    group: str
    modified_at: float  # unix seconds
    symlink_target: str | None = None

    def to_file_entry(self) -> dict[str, Any]:
        """The contract's `FileEntry` JSON object (`modified_at` in whole seconds)."""
        return {
            "name": self.name,
            "path": self.path,
            "type": self.type,
            "size": self.size,
            "mode": self.mode,
            "permissions": self.permissions,
            "owner": self.owner,
            "group": self.group,
            "modified_at": int(self.modified_at),
            "symlink_target": self.symlink_target,
        }


@dataclass(frozen=True, slots=True)
class WatchStarted:
    """The watch is in place: changes from now on are reported."""


@dataclass(frozen=True, slots=True)
class FilesystemEvent:
    name: str  # path relative to the watched directory
    type: Literal["create", "write", "remove", "rename", "chmod"]
    entry: EntryInfo | None = None  # with include_entry, for create/write/chmod


WatchEvent = WatchStarted | FilesystemEvent


@dataclass(frozen=True, slots=True)
class GuestMetrics:
    ts: int
    cpu_count: int
    cpu_used_pct: float
    mem_total: int
    mem_used: int
    disk_total: int
    disk_used: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


# -- wire helpers -----------------------------------------------------------------------------

_TYPES: dict[str, Literal["file", "directory", "symlink"]] = {
    "FILE_TYPE_FILE": "file",
    "FILE_TYPE_DIRECTORY": "directory",
    "FILE_TYPE_SYMLINK": "symlink",
}


def selector(value: Selector) -> dict[str, Any]:
    """A ProcessSelector: an int (or an all-digits string) is a pid, anything else a tag."""
    if isinstance(value, int) or value.isdigit():
        return {"pid": int(value)}
    return {"tag": value}


def _parse_rfc3339(text: str) -> float:
    from datetime import datetime

    main, _, frac = text.rstrip("Z").partition(".")
    stamp = datetime.fromisoformat(main + "+00:00").timestamp()
    return stamp + (float("0." + frac) if frac else 0.0)


def _entry(raw: Mapping[str, Any]) -> EntryInfo:
    modified = raw.get("modifiedTime")
    return EntryInfo(
        name=raw.get("name", ""),
        path=raw.get("path", ""),
        type=_TYPES.get(raw.get("type", ""), "file"),
        size=int(raw.get("size", 0)),
        mode=int(raw.get("mode", 0)),
        permissions=raw.get("permissions", ""),
        owner=raw.get("owner", ""),
        group=raw.get("group", ""),
        modified_at=_parse_rfc3339(modified) if modified else 0.0,
        symlink_target=raw.get("symlinkTarget"),
    )


def _event(raw: Mapping[str, Any]) -> ProcessEvent | None:
    if "_raw" in raw:
        return ProcessOutput(*raw["_raw"])
    if "_data" in raw:
        stream: Stream = raw["_data"][0]
        return ProcessOutput(stream, binascii.a2b_base64(raw["_data"][1]))
    event = raw.get("event") or {}
    if "data" in event:
        data = event["data"]
        for name in ("stdout", "stderr", "pty"):
            if name in data:
                return ProcessOutput(name, base64.b64decode(data[name]))
        return None
    if "start" in event:
        return ProcessStarted(int(event["start"].get("pid", 0)))
    if "end" in event:
        end = event["end"]
        return ProcessEnded(
            exit_code=int(end.get("exitCode", 0)),
            exited=bool(end.get("exited", False)),
            status=end.get("status", ""),
            error=end.get("error"),
        )
    return None  # keepalive


def _envelope(message: Mapping[str, Any]) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode()
    return struct.pack(">BI", 0, len(data)) + data


_STREAMS: tuple[Stream, ...] = ("stdout", "stderr", "pty")
_DATA_PREFIXES: dict[bytes, Stream] = {b'{"event":{"data":{"' + name.encode() + b'":"': name for name in _STREAMS}
_DATA_SUFFIX = b'"}}}'


def _decode(flags: int, view: memoryview, raw: bool) -> dict[str, Any]:
    if flags & RAW_OUTPUT:
        if not raw or len(view) < 1 or view[0] not in _RAW_STREAMS:
            raise EnvdError("internal", "unexpected raw output message from envd")
        return {"_raw": (_RAW_STREAMS[view[0]], bytes(view[1:]))}
    payload = bytes(view)
    # Output events are most of a JSON stream's bytes: decode envd's exact shape without a JSON pass.
    if payload.endswith(_DATA_SUFFIX):
        head = payload[:30]
        for prefix, name in _DATA_PREFIXES.items():
            if head.startswith(prefix):
                encoded = memoryview(payload)[len(prefix) : -len(_DATA_SUFFIX)]
                return {"_data": (name, encoded)}
    return json.loads(payload) if payload else {}


async def _envelopes(
    content_type: str, body: AsyncIterator[bytes]
) -> AsyncIterator[tuple[int, dict[str, Any]]]:
    """The envelopes of a streaming body. Received chunks are joined once a whole message is in
    (one copy per message, however many reads it took), not on every read."""
    raw = content_type.startswith(CONNECT_RAW_OUTPUT)
    chunks: list[bytes] = []
    have, need = 0, 5  # bytes held; bytes needed before the next message can be parsed
    async for chunk in body:
        chunks.append(chunk)
        have += len(chunk)
        if have < need:
            continue
        buffer = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        view = memoryview(buffer)
        offset, need = 0, 5
        while len(buffer) - offset >= 5:
            flags, length = struct.unpack_from(">BI", buffer, offset)
            if len(buffer) - offset < 5 + length:
                need = 5 + length
                break
            message = _decode(flags, view[offset + 5 : offset + 5 + length], raw)
            offset += 5 + length
            yield flags, message
        rest = buffer[offset:] if offset else buffer
        chunks = [rest] if rest else []
        have = len(rest)
    if have:
        raise EnvdError("internal", "stream ended inside a message")


def _error_from_response(status: int, body: bytes) -> EnvdError:
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    code = data.get("code") if isinstance(data, dict) else None
    message = data.get("message", "") if isinstance(data, dict) else ""
    if not isinstance(code, str):  # /files errors carry the HTTP status as their code
        code = {
            400: "invalid_argument",
            401: "unauthenticated",
            403: "permission_denied",
            404: "not_found",
            409: "already_exists",
            412: "failed_precondition",
            507: "resource_exhausted",
        }.get(status, "internal" if status >= 500 else "unknown")
    return EnvdError(code, message or body.decode(errors="replace")[:200], status)


def _plain_tcp(transport: httpx.AsyncBaseTransport | None) -> bool:
    """httpx's own transport, connecting over TCP itself (no Unix socket, no proxy)."""
    if transport is None:
        return True
    if type(transport) is not httpx.AsyncHTTPTransport:
        return False
    pool = getattr(transport, "_pool", None)
    return type(pool) is httpcore.AsyncConnectionPool and getattr(pool, "_uds", "unknown") is None


async def _until_end(
    envelopes: AsyncIterator[tuple[int, dict[str, Any]]],
) -> AsyncIterator[dict[str, Any]]:
    """The messages before the end-of-stream one, whose error (if any) is raised. The body is
    read to its end even after that message, so the connection can be reused."""
    end: dict[str, Any] | None = None
    async for flags, payload in envelopes:
        if flags & 0x02:
            end = payload
        elif end is None:
            yield payload
    if end is None:
        raise EnvdUnavailable("stream from envd ended without an end-of-stream message")
    error = end.get("error")
    if error:
        raise EnvdError(error.get("code", "unknown"), error.get("message", ""))


class EnvdClient:
    """An async client for one envd. Cheap to keep around: it pools its connections."""

    def __init__(
        self,
        base_url: str,
        access_token: str | None = None,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        raw_output: bool = True,
    ) -> None:
        """`raw_output=False` asks for process output in the plain Connect JSON form only."""
        self.base_url = base_url.rstrip("/")
        self.access_token = access_token
        self.raw_output = raw_output
        self.timeout = timeout
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        # A stream may be quiet for long, but envd sends a keepalive every KEEPALIVE_INTERVAL.
        self._stream_timeout = httpx.Timeout(
            connect_timeout, connect=connect_timeout, read=KEEPALIVE_INTERVAL * 3, write=timeout
        )
        url = httpx.URL(self.base_url)
        limits = httpx.Limits(max_keepalive_connections=16, keepalive_expiry=30)
        if transport is None and url.scheme == "http":
            # Plain HTTP needs no certificates: httpx's default would load the CA bundle for
            # every client (tens of ms, and agents make a client per capsule or per operation).
            transport = httpx.AsyncHTTPTransport(verify=False, limits=limits)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=self._timeout, transport=transport, limits=limits
        )
        # Process streams skip httpx when envd is plain HTTP over TCP (not a mock or other
        # substituted transport).
        self._streams: StreamPool | None = None
        if url.scheme == "http" and url.host and _plain_tcp(transport):
            self._streams = StreamPool(url.host, url.port or 80)
        self._connect_timeout = connect_timeout

    async def __aenter__(self) -> EnvdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._streams is not None:
            await self._streams.aclose()
        await self._http.aclose()

    # -- plumbing ---------------------------------------------------------------------------

    def _headers(self, user: str | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Connect-Protocol-Version": "1"}
        if self.access_token:
            headers["X-Access-Token"] = self.access_token
        if user:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:".encode()).decode()
        if extra:
            headers.update(extra)
        return headers

    async def _call(self, method: str, url: str, ok: tuple[int, ...] = (200,), **kwargs: Any) -> httpx.Response:
        """One request and its whole response; transport failures and statuses outside `ok` as EnvdErrors."""
        try:
            r = await self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise EnvdError("deadline_exceeded", f"envd did not answer in time ({exc!r})") from exc
        except httpx.TransportError as exc:
            raise EnvdUnavailable(f"cannot reach envd at {self.base_url}: {exc!r}") from exc
        if r.status_code not in ok:
            raise _error_from_response(r.status_code, r.content)
        return r

    async def _unary(
        self, method: str, message: Mapping[str, Any], user: str | None = None
    ) -> dict[str, Any]:
        r = await self._call(
            "POST",
            f"/{method}",
            content=json.dumps(message).encode(),
            headers=self._headers(user, {"Content-Type": "application/json"}),
        )
        data = r.json()
        return data if isinstance(data, dict) else {}

    @asynccontextmanager
    async def _open_stream(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        """A streamed response with status 200 (else its EnvdError), closed on leaving."""
        request = self._http.build_request(method, url, timeout=self._stream_timeout, **kwargs)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise EnvdError("deadline_exceeded", f"envd did not answer in time ({exc!r})") from exc
        except httpx.TransportError as exc:
            raise EnvdUnavailable(f"cannot reach envd at {self.base_url}: {exc!r}") from exc
        try:
            if response.status_code != 200:
                raise _error_from_response(response.status_code, await response.aread())
            yield response
        finally:
            await response.aclose()

    async def _server_stream(
        self,
        method: str,
        message: Mapping[str, Any],
        user: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (envd enforces it)
        raw_output: bool = False,
    ) -> AsyncGenerator[dict[str, Any], None]:
        extra = {"Content-Type": CONNECT_JSON, "Keepalive-Ping-Interval": str(int(KEEPALIVE_INTERVAL))}
        if raw_output and self.raw_output:
            extra["Accept"] = f"{CONNECT_RAW_OUTPUT}, {CONNECT_JSON}"
        if timeout is not None:
            extra["Connect-Timeout-Ms"] = str(max(1, int(timeout * 1000)))
        headers = self._headers(user, extra)
        if self._streams is not None:
            async for payload in self._fast_stream(f"/{method}", headers, _envelope(message)):
                yield payload
            return
        async with self._open_stream("POST", f"/{method}", content=_envelope(message), headers=headers) as response:
            content_type = response.headers.get("content-type", "")
            try:
                async for payload in _until_end(_envelopes(content_type, response.aiter_raw())):
                    yield payload
            except httpx.TimeoutException as exc:
                raise EnvdError("deadline_exceeded", "envd stream went silent") from exc
            except httpx.TransportError as exc:
                raise EnvdUnavailable(f"stream from envd broke: {exc!r}") from exc

    async def _fast_stream(
        self, path: str, headers: Mapping[str, str], body: bytes
    ) -> AsyncGenerator[dict[str, Any], None]:
        assert self._streams is not None
        try:
            response = await self._streams.post(
                path,
                headers,
                body,
                connect_timeout=self._connect_timeout,
                read_timeout=KEEPALIVE_INTERVAL * 3,
            )
        except StreamTimeout as exc:
            raise EnvdError("deadline_exceeded", f"envd did not answer in time ({exc})") from exc
        except StreamBroken as exc:
            raise EnvdUnavailable(f"cannot reach envd at {self.base_url}: {exc}") from exc
        try:
            try:
                if response.status != 200:
                    raise _error_from_response(response.status, await response.read())
                content_type = response.headers.get("content-type", "")
                async for payload in _until_end(_envelopes(content_type, response.iter_body())):
                    yield payload
            except StreamTimeout as exc:
                raise EnvdError("deadline_exceeded", "envd stream went silent") from exc
            except StreamBroken as exc:
                raise EnvdUnavailable(f"stream from envd broke: {exc}") from exc
        finally:
            await response.aclose()

    # -- agent ------------------------------------------------------------------------------

    async def health(self) -> bool:
        try:
            r = await self._http.get("/health", timeout=2.0)
        except httpx.HTTPError:
            return False
        return r.status_code in (200, 204)

    async def wait_ready(self, within: float = 10.0, interval: float = 0.02) -> None:
        import asyncio

        deadline = time.monotonic() + within
        while not await self.health():
            if time.monotonic() >= deadline:
                raise EnvdUnavailable(f"envd at {self.base_url} not ready after {within:g} s")
            await asyncio.sleep(interval)

    async def init(
        self,
        *,
        access_token: str | None = None,
        env_vars: Mapping[str, str] | None = None,
        default_user: str | None = None,
        default_workdir: str | None = None,
        timestamp: float | None = None,
    ) -> None:
        """`POST /init`. A new `access_token` is required by envd on every later call, and used
        by this client from then on. `timestamp` (unix seconds) sets the guest clock."""
        body: dict[str, Any] = {}
        if access_token is not None:
            body["accessToken"] = access_token
        if env_vars:
            body["envVars"] = dict(env_vars)
        if default_user:
            body["defaultUser"] = default_user
        if default_workdir:
            body["defaultWorkdir"] = default_workdir
        if timestamp is not None:
            whole = int(timestamp)
            body["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + (
                f".{round((timestamp - whole) * 1e6):06d}Z"
            )
        await self._call("POST", "/init", (200, 204), json=body, headers=self._headers())
        if access_token:
            self.access_token = access_token

    async def version(self) -> str:
        r = await self._call("GET", "/version", headers=self._headers())
        return str(r.json().get("version", ""))

    async def metrics(self) -> GuestMetrics:
        data = (await self._call("GET", "/metrics", headers=self._headers())).json()
        return GuestMetrics(
            ts=int(data["ts"]),
            cpu_count=int(data["cpu_count"]),
            cpu_used_pct=float(data["cpu_used_pct"]),
            mem_total=int(data["mem_total"]),
            mem_used=int(data["mem_used"]),
            disk_total=int(data["disk_total"]),
            disk_used=int(data["disk_used"]),
            raw=data,
        )

    # -- processes --------------------------------------------------------------------------

    async def start(
        self,
        cmd: str,
        args: Iterable[str] = (),
        *,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        tag: str | None = None,
        pty: PtySize | None = None,
        stdin: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 (envd enforces it)
    ) -> AsyncGenerator[ProcessEvent, None]:
        """Start a process and stream its events: `ProcessStarted`, `ProcessOutput`s, then
        `ProcessEnded`. Leaving the iteration early detaches; the process keeps running
        (reattach with `connect`). With `timeout`, envd kills it at the deadline and the stream
        ends with `EnvdError("deadline_exceeded")` after its `ProcessEnded`."""
        process: dict[str, Any] = {"cmd": cmd, "args": list(args), "envs": dict(envs or {})}
        if cwd:
            process["cwd"] = cwd
        message: dict[str, Any] = {"process": process, "stdin": stdin}
        if tag:
            message["tag"] = tag
        if pty is not None:
            message["pty"] = {"size": {"cols": pty.cols, "rows": pty.rows}}
        async for payload in self._server_stream(
            "process.Process/Start", message, user, timeout, raw_output=True
        ):
            event = _event(payload)
            if event is not None:
                yield event

    async def connect(self, process: Selector) -> AsyncGenerator[ProcessEvent, None]:
        """Reattach to a process (pid or tag): `ProcessStarted`, its output kept since start
        (bounded), then live output and `ProcessEnded`."""
        message = {"process": selector(process)}
        async for payload in self._server_stream("process.Process/Connect", message, raw_output=True):
            event = _event(payload)
            if event is not None:
                yield event

    async def run(
        self,
        cmd: str,
        args: Iterable[str] = (),
        *,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        tag: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (envd enforces it)
        stdin: bool = False,
    ) -> CommandResult:
        """Run a command in the foreground and collect its output. A timeout kills it and
        raises `EnvdError` with code `deadline_exceeded`."""
        stdout, stderr = bytearray(), bytearray()
        pid = 0
        result: CommandResult | None = None
        # Read to the end of the stream: a timeout is reported after the end event.
        async for event in self.start(
            cmd, args, envs=envs, cwd=cwd, user=user, tag=tag, timeout=timeout, stdin=stdin
        ):
            if isinstance(event, ProcessStarted):
                pid = event.pid
            elif isinstance(event, ProcessOutput):
                (stderr if event.stream == "stderr" else stdout).extend(event.data)
            else:
                result = CommandResult(
                    pid, event.exit_code, event.exited, event.status, bytes(stdout), bytes(stderr)
                )
        if result is None:
            raise EnvdError("internal", "process stream ended without an exit status")
        return result

    async def start_background(
        self,
        cmd: str,
        args: Iterable[str] = (),
        *,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        tag: str | None = None,
        stdin: bool = False,
    ) -> ProcessInfo:
        """Start a process and return as soon as it runs (its output stays readable by
        `connect`). Without a tag, one is chosen here (`proc-` + 8 hex, as envd would), so it
        is known even if the process exits at once."""
        tag = tag or "proc-" + secrets.token_hex(4)
        stream = self.start(cmd, args, envs=envs, cwd=cwd, user=user, tag=tag, stdin=stdin)
        try:
            async for event in stream:
                if isinstance(event, ProcessStarted):
                    break
            else:
                raise EnvdError("internal", "process stream ended before the process started")
        finally:
            await stream.aclose()
        for info in await self.list_processes():
            if info.pid == event.pid:
                return info
        # It already exited (List shows running processes only).
        return ProcessInfo(event.pid, tag, cmd, list(args), dict(envs or {}), cwd)

    async def list_processes(self) -> list[ProcessInfo]:
        data = await self._unary("process.Process/List", {})
        out = []
        for raw in data.get("processes", []):
            config = raw.get("config") or {}
            out.append(
                ProcessInfo(
                    pid=int(raw.get("pid", 0)),
                    tag=raw.get("tag", ""),
                    cmd=config.get("cmd", ""),
                    args=list(config.get("args") or []),
                    envs=dict(config.get("envs") or {}),
                    cwd=config.get("cwd"),
                )
            )
        return out

    async def send_input(self, process: Selector, data: bytes, *, pty: bool = False) -> None:
        key = "pty" if pty else "stdin"
        await self._unary(
            "process.Process/SendInput",
            {"process": selector(process), "input": {key: base64.b64encode(data).decode()}},
        )

    async def stream_input(
        self, process: Selector, chunks: AsyncIterable[bytes], *, pty: bool = False
    ) -> None:
        """Send many input chunks over one client-streaming call."""
        key = "pty" if pty else "stdin"

        async def body() -> AsyncIterator[bytes]:
            yield _envelope({"start": {"process": selector(process)}})
            async for chunk in chunks:
                yield _envelope({"data": {"input": {key: base64.b64encode(chunk).decode()}}})

        headers = self._headers(extra={"Content-Type": CONNECT_JSON})
        async with self._open_stream("POST", "/process.Process/StreamInput", content=body(), headers=headers) as r:
            async for flags, payload in _envelopes(r.headers.get("content-type", ""), r.aiter_raw()):
                if flags & 0x02 and payload.get("error"):
                    error = payload["error"]
                    raise EnvdError(error.get("code", "unknown"), error.get("message", ""))

    async def send_signal(self, process: Selector, signal: SignalName = "SIGKILL") -> None:
        await self._unary(
            "process.Process/SendSignal",
            {"process": selector(process), "signal": f"SIGNAL_{signal}"},
        )

    async def close_stdin(self, process: Selector) -> None:
        await self._unary("process.Process/CloseStdin", {"process": selector(process)})

    async def resize_pty(self, process: Selector, cols: int, rows: int) -> None:
        await self._unary(
            "process.Process/Update",
            {"process": selector(process), "pty": {"size": {"cols": cols, "rows": rows}}},
        )

    # -- filesystem -------------------------------------------------------------------------

    async def stat(self, path: str, *, user: str | None = None) -> EntryInfo:
        data = await self._unary("filesystem.Filesystem/Stat", {"path": path}, user)
        return _entry(data["entry"])

    async def list_dir(self, path: str, depth: int = 1, *, user: str | None = None) -> list[EntryInfo]:
        data = await self._unary("filesystem.Filesystem/ListDir", {"path": path, "depth": depth}, user)
        return [_entry(e) for e in data.get("entries", [])]

    async def make_dir(self, path: str, *, user: str | None = None) -> EntryInfo:
        """Create a directory and its parents; `EnvdError("already_exists")` if present."""
        data = await self._unary("filesystem.Filesystem/MakeDir", {"path": path}, user)
        return _entry(data["entry"])

    async def remove(self, path: str, *, user: str | None = None) -> None:
        """Remove a file, or a directory recursively."""
        await self._unary("filesystem.Filesystem/Remove", {"path": path}, user)

    async def move(self, source: str, destination: str, *, user: str | None = None) -> EntryInfo:
        data = await self._unary(
            "filesystem.Filesystem/Move", {"source": source, "destination": destination}, user
        )
        return _entry(data["entry"])

    async def watch_dir(
        self, path: str, *, recursive: bool = False, include_entry: bool = False, user: str | None = None
    ) -> AsyncGenerator[WatchEvent, None]:
        """Stream changes below a directory: `WatchStarted`, then `FilesystemEvent`s until the
        iteration is left or the directory goes away."""
        kinds: dict[str, Literal["create", "write", "remove", "rename", "chmod"]] = {
            "EVENT_TYPE_CREATE": "create",
            "EVENT_TYPE_WRITE": "write",
            "EVENT_TYPE_REMOVE": "remove",
            "EVENT_TYPE_RENAME": "rename",
            "EVENT_TYPE_CHMOD": "chmod",
        }
        message = {"path": path, "recursive": recursive, "includeEntry": include_entry}
        async for payload in self._server_stream("filesystem.Filesystem/WatchDir", message, user):
            if "start" in payload:
                yield WatchStarted()
            elif "filesystem" in payload:
                raw = payload["filesystem"]
                kind = kinds.get(raw.get("type", ""))
                if kind is not None:
                    entry = _entry(raw["entry"]) if raw.get("entry") else None
                    yield FilesystemEvent(raw.get("name", ""), kind, entry)

    async def read_file(self, path: str, *, user: str | None = None) -> bytes:
        parts = [chunk async for chunk in self.download(path, user=user)]
        return b"".join(parts)

    async def download(
        self, path: str, *, user: str | None = None, chunk_size: int = 1024 * 1024
    ) -> AsyncGenerator[bytes, None]:
        """A file's bytes, streamed in chunks (constant memory whatever its size)."""
        params = {"path": path}
        if user:
            params["username"] = user
        async with self._open_stream("GET", "/files", params=params, headers=self._headers()) as response:
            try:
                async for chunk in response.aiter_raw(chunk_size):
                    yield chunk
            except httpx.TransportError as exc:
                raise EnvdUnavailable(f"download from envd broke: {exc!r}") from exc

    async def write_file(
        self,
        path: str,
        data: bytes | AsyncIterable[bytes],
        *,
        user: str | None = None,
    ) -> str:
        """Write a file atomically (temporary file + rename), creating parent directories.
        `data` may be bytes or an async iterable of chunks (streamed, constant memory).
        Returns the absolute path written."""
        params = {"path": path}
        if user:
            params["username"] = user
        headers = self._headers(extra={"Content-Type": "application/octet-stream"})
        r = await self._call(
            "POST", "/files", params=params, content=data, headers=headers, timeout=self._stream_timeout
        )
        entries = r.json()
        return str(entries[0]["path"]) if entries else path
