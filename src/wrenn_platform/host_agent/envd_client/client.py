"""`EnvdClient`: the calls the host side makes into a capsule's envd, over one `Transport`."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from wrenn_platform.wire.api.capsules import FileEntry
from wrenn_platform.wire.envd import CONNECT_JSON, CONNECT_RAW_OUTPUT

from . import codec
from .errors import EnvdError, EnvdUnavailable, error_from_response, transport_errors
from .transport import Body, Response, Transport
from .values import (
    CommandResult,
    GuestMetrics,
    ProcessEnded,
    ProcessEvent,
    ProcessInfo,
    ProcessOutput,
    ProcessStarted,
    PtySize,
    Selector,
    SignalName,
)

KEEPALIVE_INTERVAL = 15.0  # seconds between envd's keepalive events on a stream
_STREAM_READ_TIMEOUT = KEEPALIVE_INTERVAL * 3  # a stream may be quiet for long, but not this long


class EnvdClient:
    """An async client for one envd at `base_url` (`http://host:port`). Cheap to make and to keep
    around: it pools its connections."""

    def __init__(
        self,
        base_url: str,
        access_token: str | None = None,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        raw_output: bool = True,
    ) -> None:
        """`raw_output=False` asks for process output in the plain Connect JSON form only."""
        self.base_url = base_url.rstrip("/")
        url = urlsplit(self.base_url)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"envd is reached over plain http://host:port, not {base_url!r}")
        self.access_token = access_token
        self.raw_output = raw_output
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._transport = Transport(url.hostname, url.port or 80)

    async def __aenter__(self) -> EnvdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

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

    async def _send(
        self, method: str, target: str, headers: Mapping[str, str], body: Body = b"", *,
        ok: tuple[int, ...] = (200,), io_timeout: float | None = None, connect_timeout: float | None = None,
    ) -> Response:
        """A response with a status in `ok` whose body is still to be read (else its EnvdError)."""
        with transport_errors(self.base_url):
            response = await self._transport.request(
                method, target, headers, body,
                connect_timeout=self.connect_timeout if connect_timeout is None else connect_timeout,
                io_timeout=self.timeout if io_timeout is None else io_timeout,
            )
            if response.status not in ok:
                try:
                    raise error_from_response(response.status, await response.read())
                finally:
                    await response.aclose()
        return response

    async def _call(
        self, method: str, target: str, headers: Mapping[str, str], body: Body = b"", *,
        ok: tuple[int, ...] = (200,), io_timeout: float | None = None, connect_timeout: float | None = None,
    ) -> bytes:
        """One request and its whole response body; statuses outside `ok` as EnvdErrors."""
        response = await self._send(
            method, target, headers, body, ok=ok, io_timeout=io_timeout, connect_timeout=connect_timeout
        )
        try:
            with transport_errors(self.base_url):
                return await response.read()
        finally:
            await response.aclose()

    async def unary(self, method: str, message: Mapping[str, Any], user: str | None = None) -> dict[str, Any]:
        """A unary Connect call (`process.Process/List`, ...): its response message."""
        headers = self._headers(user, {"Content-Type": "application/json"})
        data = await self._call("POST", f"/{method}", headers, json.dumps(message).encode())
        answer = json.loads(data) if data else {}
        return answer if isinstance(answer, dict) else {}

    async def server_stream(
        self,
        method: str,
        message: Mapping[str, Any],
        user: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (envd enforces it)
        raw_output: bool = False,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """A server-streaming Connect call: its messages until the end of the stream, whose error
        (if any) is raised. `timeout` is the deadline envd enforces on the call."""
        extra = {"Content-Type": CONNECT_JSON, "Keepalive-Ping-Interval": str(int(KEEPALIVE_INTERVAL))}
        if raw_output and self.raw_output:
            extra["Accept"] = f"{CONNECT_RAW_OUTPUT}, {CONNECT_JSON}"
        if timeout is not None:
            extra["Connect-Timeout-Ms"] = str(max(1, int(timeout * 1000)))
        response = await self._send(
            "POST", f"/{method}", self._headers(user, extra), codec.envelope(message), io_timeout=_STREAM_READ_TIMEOUT
        )
        try:
            with transport_errors(self.base_url, "stream broke from"):
                content_type = response.headers.get("content-type", "")
                async for payload in codec.until_end(codec.envelopes(content_type, response.iter_body())):
                    yield payload
        finally:
            await response.aclose()

    # -- agent ------------------------------------------------------------------------------

    async def health(self) -> bool:
        try:
            await self._call("GET", "/health", {}, ok=(200, 204), io_timeout=2.0, connect_timeout=2.0)
        except EnvdError:
            return False
        return True

    async def wait_ready(self, within: float, alive: Callable[[], bool] | None = None) -> None:
        """Poll `GET /health` until envd answers; `alive()` returning False gives up early (the
        capsule's process is gone). Raises EnvdUnavailable."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        delay = 0.001  # a refused connect costs ~0.1 ms: polling often keeps the wait after envd is up short
        while not await self.health():
            if alive is not None and not alive():
                raise EnvdUnavailable("the capsule exited while envd was starting")
            if loop.time() > deadline:
                raise EnvdUnavailable(f"envd at {self.base_url} did not answer within {within:g} s")
            await asyncio.sleep(delay)
            delay = min(delay * 1.2, 0.003)

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
            body["timestamp"] = codec.rfc3339(timestamp)
        headers = self._headers(extra={"Content-Type": "application/json"})
        await self._call("POST", "/init", headers, json.dumps(body).encode(), ok=(200, 204))
        if access_token:
            self.access_token = access_token

    async def version(self, default: str | None = None) -> str:
        """envd's version; with `default`, that instead of an error when envd cannot tell."""
        try:
            data = json.loads(await self._call("GET", "/version", self._headers()))
            return str(data["version"])
        except (EnvdError, ValueError, KeyError, TypeError):
            if default is None:
                raise
            return default

    async def metrics(self) -> GuestMetrics:
        data = json.loads(await self._call("GET", "/metrics", self._headers()))
        return GuestMetrics(
            ts=int(data["ts"]),
            cpu_count=int(data["cpu_count"]),
            cpu_used_pct=float(data["cpu_used_pct"]),
            mem_total=int(data["mem_total"]),
            mem_used=int(data["mem_used"]),
            disk_total=int(data["disk_total"]),
            disk_used=int(data["disk_used"]),
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
        async for payload in self.server_stream("process.Process/Start", message, user, timeout, raw_output=True):
            event = codec.process_event(payload)
            if event is not None:
                yield event

    async def connect(self, process: Selector) -> AsyncGenerator[ProcessEvent, None]:
        """Reattach to a process (pid or tag): `ProcessStarted`, its output kept since start
        (bounded), then live output and `ProcessEnded`."""
        message = {"process": codec.selector(process)}
        async for payload in self.server_stream("process.Process/Connect", message, raw_output=True):
            event = codec.process_event(payload)
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
    ) -> CommandResult:
        """Run a command in the foreground and collect its output. At `timeout` envd kills it: the
        result says `timed_out`, with the output produced until then."""
        stdout, stderr = bytearray(), bytearray()
        pid = 0
        end: ProcessEnded | None = None
        timed_out = False
        try:
            # Read to the end of the stream: a timeout is reported after the end event.
            async for event in self.start(
                cmd, args, envs=envs, cwd=cwd, user=user, tag=tag, timeout=timeout, stdin=False
            ):
                if isinstance(event, ProcessStarted):
                    pid = event.pid
                elif isinstance(event, ProcessOutput):
                    (stderr if event.stream == "stderr" else stdout).extend(event.data)
                elif isinstance(event, ProcessEnded):
                    end = event
        except EnvdError as exc:
            if exc.code != "deadline_exceeded":
                raise
            timed_out = True
        if end is None and not timed_out:
            raise EnvdError("internal", "process stream ended without an exit status")
        return CommandResult(
            pid,
            end.exit_code if end else -1,
            end.exited if end else False,
            end.status if end else "",
            bytes(stdout),
            bytes(stderr),
            timed_out,
        )

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
        data = await self.unary("process.Process/List", {})
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
        await self.unary(
            "process.Process/SendInput",
            {"process": codec.selector(process), "input": {key: base64.b64encode(data).decode()}},
        )

    async def send_signal(self, process: Selector, signal: SignalName = "SIGKILL") -> None:
        await self.unary(
            "process.Process/SendSignal", {"process": codec.selector(process), "signal": f"SIGNAL_{signal}"}
        )

    async def resize_pty(self, process: Selector, cols: int, rows: int) -> None:
        await self.unary(
            "process.Process/Update",
            {"process": codec.selector(process), "pty": {"size": {"cols": cols, "rows": rows}}},
        )

    # -- filesystem -------------------------------------------------------------------------

    async def list_dir(self, path: str, depth: int = 1, *, user: str | None = None) -> list[FileEntry]:
        data = await self.unary("filesystem.Filesystem/ListDir", {"path": path, "depth": depth}, user)
        return [codec.file_entry(e) for e in data.get("entries", [])]

    async def make_dir(self, path: str, *, user: str | None = None) -> FileEntry:
        """Create a directory and its parents; `EnvdError("already_exists")` if present."""
        data = await self.unary("filesystem.Filesystem/MakeDir", {"path": path}, user)
        return codec.file_entry(data["entry"])

    async def remove(self, path: str, *, user: str | None = None) -> None:
        """Remove a file, or a directory recursively."""
        await self.unary("filesystem.Filesystem/Remove", {"path": path}, user)

    def _files_target(self, path: str, user: str | None) -> str:
        params = {"path": path}
        if user:
            params["username"] = user
        return "/files?" + urlencode(params)

    async def download(self, path: str, *, user: str | None = None) -> AsyncGenerator[bytes, None]:
        """A file's bytes, streamed in chunks (constant memory whatever its size)."""
        response = await self._send(
            "GET", self._files_target(path, user), self._headers(), io_timeout=_STREAM_READ_TIMEOUT
        )
        try:
            with transport_errors(self.base_url, "download broke from"):
                async for chunk in response.iter_body():
                    yield chunk
        finally:
            await response.aclose()

    async def write_file(self, path: str, data: Body, *, user: str | None = None) -> str:
        """Write a file atomically (temporary file + rename), creating parent directories.
        `data` may be bytes or an async iterable of chunks (streamed, constant memory).
        Returns the absolute path written."""
        headers = self._headers(extra={"Content-Type": "application/octet-stream"})
        target = self._files_target(path, user)
        answer = await self._call("POST", target, headers, data, io_timeout=_STREAM_READ_TIMEOUT)
        entries = json.loads(answer)
        return str(entries[0]["path"]) if entries else path

