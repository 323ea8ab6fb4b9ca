"""Routing and authentication: every path envd answers, and the access-token check."""

from __future__ import annotations

import sys

from . import aio
from .connect import RpcError, end_stream, parse_message, send_unary, send_unary_error
from .files import FilesHandler, send_error
from .httpio import BadRequest, Request, Response
from .manager import ProcessManager
from .metrics import Metrics
from .protocol import CONNECT_JSON, VERSION
from .rpc_filesystem import FilesystemService
from .rpc_process import ProcessService
from .state import AgentState
from .users import FsIdentities
from .watchers import PollingWatchers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any

    Unary = Callable[[dict[str, Any], Request], Awaitable[dict[str, Any]]]
    Streaming = Callable[[Request, Response], Awaitable[None]]

_OPERATION = {"GET": "read", "POST": "write"}  # of a signed file URL


class Envd:
    def __init__(
        self,
        access_token: str | None = None,
        output_bound: int = 8 * 1024 * 1024,
        pty_idle_timeout: float = 600.0,
    ) -> None:
        self.state = AgentState(access_token)
        self.fs = FsIdentities()
        self.processes = ProcessManager(self.fs, output_bound, pty_idle_timeout)
        self.metrics = Metrics()
        process = ProcessService(self.processes, self.state)
        filesystem = FilesystemService(self.fs, self.state)
        self.watchers = watchers = PollingWatchers(self.fs, self.state)
        self.files = FilesHandler(self.fs, self.state)
        self.after_first_request: Callable[[], None] | None = None  # run once the loop is idle
        self.unary: dict[str, Unary] = {
            "/process.Process/List": process.list,
            "/process.Process/SendInput": process.send_input,
            "/process.Process/SendSignal": process.send_signal,
            "/process.Process/Update": process.update,
            "/process.Process/CloseStdin": process.close_stdin,
            "/filesystem.Filesystem/Stat": filesystem.stat,
            "/filesystem.Filesystem/MakeDir": filesystem.make_dir,
            "/filesystem.Filesystem/Move": filesystem.move,
            "/filesystem.Filesystem/Remove": filesystem.remove,
            "/filesystem.Filesystem/ListDir": filesystem.list_dir,
            "/filesystem.Filesystem/CreateWatcher": watchers.create,
            "/filesystem.Filesystem/GetWatcherEvents": watchers.events,
            "/filesystem.Filesystem/RemoveWatcher": watchers.remove,
        }
        self.streaming: dict[str, Streaming] = {
            "/process.Process/Start": process.start,
            "/process.Process/Connect": process.connect,
            "/process.Process/StreamInput": process.stream_input,
            "/filesystem.Filesystem/WatchDir": filesystem.watch_dir,
        }

    async def __call__(self, request: Request, response: Response) -> None:
        try:
            await self._route(request, response)
        finally:
            if self.after_first_request is not None:
                aio.get_running_loop().call_soon(self.after_first_request)
                self.after_first_request = None

    async def _route(self, request: Request, response: Response) -> None:
        path = request.path
        try:
            if path == "/health":
                await response.send(204)
                return
            if not self.state.check_token(request.headers.get("x-access-token")) and not (
                path == "/files" and self.state.check_signature(request.query, _OPERATION.get(request.method, ""))
            ):
                await self._unauthenticated(request, response)
                return
            if path in self.unary:
                await self._unary(self.unary[path], request, response)
            elif path in self.streaming:
                await self._streaming(self.streaming[path], request, response)
            elif path == "/files":
                await self.files.handle(request, response)
            elif path == "/init" and request.method == "POST":
                await self._init(request, response)
            elif path == "/metrics" and request.method == "GET":
                await send_unary(response, self.metrics.snapshot())
            elif path == "/envs" and request.method == "GET":
                await send_unary(response, dict(self.state.env_vars))
            elif path == "/version":
                await send_unary(response, {"version": VERSION})
            elif path_is_rpc(path):
                response.keep_alive = response.keep_alive and request.body_done
                await send_unary_error(response, RpcError("unimplemented", f"{path} is not implemented"))
            else:
                response.keep_alive = response.keep_alive and request.body_done
                await send_error(response, RpcError("not_found", f"no route {request.method} {path}"))
        except BadRequest as exc:
            response.keep_alive = False
            if not response.started:
                await send_error(response, RpcError("invalid_argument", str(exc)))
        except (ConnectionError, aio.IncompleteReadError):
            raise
        except Exception as exc:  # a bug: report it, keep serving other requests
            import traceback  # only on a bug: not worth importing at start

            traceback.print_exc(file=sys.stderr)
            response.keep_alive = False
            if not response.started:
                error = RpcError("internal", f"{type(exc).__name__}: {exc}")
                if path_is_rpc(path):
                    await send_unary_error(response, error)
                else:
                    await send_error(response, error)

    async def _unauthenticated(self, request: Request, response: Response) -> None:
        response.keep_alive = response.keep_alive and request.body_done
        error = RpcError("unauthenticated", "missing or wrong X-Access-Token")
        if path_is_rpc(request.path):
            await send_unary_error(response, error)
        else:
            await send_error(response, error)

    async def _unary(self, handler: Unary, request: Request, response: Response) -> None:
        try:
            if request.method != "POST":
                raise RpcError("unimplemented", "Connect unary calls use POST")
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                raise RpcError("invalid_argument", "Content-Type must be application/json")
            message = parse_message(await request.read_body())
            result = await handler(message, request)
        except RpcError as exc:
            await send_unary_error(response, exc)
            return
        await send_unary(response, result)

    async def _streaming(self, handler: Streaming, request: Request, response: Response) -> None:
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != CONNECT_JSON:
            response.keep_alive = False
            await response.start(200, {"Content-Type": CONNECT_JSON})
            await response.write(
                end_stream(RpcError("invalid_argument", f"Content-Type must be {CONNECT_JSON}"))
            )
            await response.end()
            return
        try:
            await handler(request, response)
        except (RpcError, BadRequest) as exc:
            if isinstance(exc, BadRequest):
                response.keep_alive = False
                exc = RpcError("invalid_argument", str(exc))
            if not response.started:
                await response.start(200, {"Content-Type": CONNECT_JSON})
            await response.end(end_stream(exc))

    async def _init(self, request: Request, response: Response) -> None:
        try:
            body = parse_message(await request.read_body())
            self.state.apply_init(body)
        except RpcError as exc:
            await send_error(response, exc)
            return
        await response.send(204)

    def shutdown(self) -> None:
        self.watchers.shutdown()
        self.processes.shutdown()
        self.fs.shutdown()


def path_is_rpc(path: str) -> bool:
    return path.startswith(("/process.Process/", "/filesystem.Filesystem/"))

