"""E2B's code-interpreter server protocol over the Jupyter kernels of a code-runner capsule.

Runs inside the capsule (`python3 server.py`), next to Jupyter Server (localhost:8888, no token),
with the guest's Python and the Tornado that Jupyter Server brings. What E2B's
`e2b_code_interpreter` client calls:

- `POST /execute` `{code, context_id?, language?, env_vars?}` → newline-delimited JSON, in order:
  `stdout` / `stderr` `{text, timestamp}`, `result` (one field per MIME type: text, html, markdown,
  svg, png, jpeg, pdf, latex, json, javascript; `is_main_result` for the cell's value), `error`
  `{name, value, traceback}`, `number_of_executions` `{execution_count}`, `end_of_execution`.
  `env_vars` hold for this execution only. A client that goes away interrupts the kernel.
- `POST /contexts` `{language?, cwd?}` → `{id, language, cwd}`: a kernel of its own;
  `GET /contexts`; `DELETE /contexts/{id}`; `POST /contexts/{id}/restart` (state lost, cwd kept).
- `GET /health` → 200 once the default context's kernel answers.

Only Python: another `language` is a 400. An unknown context is a 404. `/execute` needs the
sandbox's envd access token in `X-Access-Token` (E2B's client sends it): envd, on this capsule's
port 49983, is asked whether it is its token (401 otherwise), since whoever knows a sandbox's id
reaches this port through the platform's proxy.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import uuid
from typing import Any

from tornado import httpclient, web, websocket
from tornado.httpserver import HTTPServer

JUPYTER = os.environ.get("WRENN_JUPYTER_URL", "http://127.0.0.1:8888")
ENVD = os.environ.get("WRENN_ENVD_URL", "http://127.0.0.1:49983")
KERNEL_NAME = os.environ.get("WRENN_KERNEL", "wrenn")
PORT = int(os.environ.get("WRENN_CODE_INTERPRETER_PORT", "49999"))
DEFAULT_CWD = "/home/user"
LANGUAGES = {"python", "python3"}
MIME_FIELDS = {
    "text/plain": "text", "text/html": "html", "text/markdown": "markdown", "image/svg+xml": "svg",
    "image/png": "png", "image/jpeg": "jpeg", "application/pdf": "pdf", "text/latex": "latex",
    "application/json": "json", "application/javascript": "javascript",
}

log = logging.getLogger("code-interpreter")
_background: set[asyncio.Future[Any]] = set()  # interrupts in flight (a reference keeps them alive)


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


async def _jupyter(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    client = httpclient.AsyncHTTPClient()
    response = await client.fetch(f"{JUPYTER}{path}", method=method, raise_error=False, request_timeout=60,
                                  body=json.dumps(body) if body is not None else (None if method in ("GET", "DELETE")
                                                                                    else "{}"))
    if response.code >= 400:
        raise HttpError(502, f"Jupyter {method} {path}: {response.code} {response.body.decode(errors='replace')}")
    return json.loads(response.body) if response.body else None


_known_tokens: set[str] = set()


async def token_accepted(token: str | None) -> bool:
    """Whether envd takes `token` (its `/envs` answers 200 with it, 401 without); remembered."""
    if token is not None and token in _known_tokens:
        return True
    headers = {"X-Access-Token": token} if token is not None else {}
    response = await httpclient.AsyncHTTPClient().fetch(f"{ENVD}/envs", headers=headers, raise_error=False,
                                                        request_timeout=10)
    if response.code == 200:
        if token is not None:
            _known_tokens.add(token)
        return True
    if response.code != 401:
        raise HttpError(502, f"envd answered {response.code} checking the access token")
    return False


class Kernel:
    """One context: a Jupyter kernel and the WebSocket to its channels; executions one at a time."""

    def __init__(self, context_id: str, kernel_id: str, cwd: str) -> None:
        self.id = context_id
        self.kernel_id = kernel_id
        self.cwd = cwd
        self.language = "python"
        self.session = uuid.uuid4().hex
        self.lock = asyncio.Lock()
        self.ws: websocket.WebSocketClientConnection | None = None

    def describe(self) -> dict[str, str]:
        return {"id": self.id, "language": self.language, "cwd": self.cwd}

    async def connect(self) -> None:
        if self.ws is not None:
            self.ws.close()
        url = JUPYTER.replace("http", "ws", 1) + f"/api/kernels/{self.kernel_id}/channels?session_id={self.session}"
        self.ws = await websocket.websocket_connect(url, max_message_size=256 * 1024 * 1024)

    def _request(self, code: str, silent: bool) -> tuple[str, str]:
        msg_id = uuid.uuid4().hex
        message = {
            "header": {"msg_id": msg_id, "username": "user", "session": self.session, "date": _now(),
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": silent, "store_history": not silent, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }
        return msg_id, json.dumps(message)

    async def execute(self, code: str, silent: bool = False) -> Any:
        """Yields the E2B output lines of one execution (as dicts)."""
        if self.ws is None:
            await self.connect()
        assert self.ws is not None
        msg_id, request = self._request(code, silent)
        await self.ws.write_message(request)
        replied = idle = False
        while not (replied and idle):
            raw = await self.ws.read_message()
            if raw is None:
                self.ws = None
                raise HttpError(502, "the kernel's connection closed during the execution")
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message.get("content", {})
            if kind == "execute_reply":
                replied = True
                if not silent and content.get("execution_count") is not None:
                    yield {"type": "number_of_executions", "execution_count": content["execution_count"]}
            elif kind == "status" and content.get("execution_state") == "idle":
                idle = True
            elif silent:
                continue
            elif kind == "stream":
                yield {"type": content.get("name", "stdout"), "text": content.get("text", ""), "timestamp": _now()}
            elif kind in ("execute_result", "display_data"):
                yield _result(content.get("data", {}), kind == "execute_result")
            elif kind == "error":
                yield {"type": "error", "name": content.get("ename", ""), "value": content.get("evalue", ""),
                       "traceback": "\n".join(content.get("traceback", []))}

    async def run_silently(self, code: str) -> None:
        async for _ in self.execute(code, silent=True):
            pass

    async def interrupt(self) -> None:
        await _jupyter("POST", f"/api/kernels/{self.kernel_id}/interrupt")


def _result(data: dict[str, Any], main: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"type": "result", "is_main_result": main}
    extra = {}
    for mime, value in data.items():
        field = MIME_FIELDS.get(mime)
        if field is not None:
            result[field] = value
        else:
            extra[mime] = value
    if extra:
        result["extra"] = extra
    return result


class Contexts:
    def __init__(self) -> None:
        self.kernels: dict[str, Kernel] = {}
        self.default: Kernel | None = None

    async def create(self, language: str | None, cwd: str | None) -> Kernel:
        if language and language.lower() not in LANGUAGES:
            raise HttpError(400, f"language {language!r} is not supported here: only python")
        started = await _jupyter("POST", "/api/kernels", {"name": KERNEL_NAME})
        kernel = Kernel(uuid.uuid4().hex, started["id"], cwd or DEFAULT_CWD)
        await kernel.connect()
        await kernel.run_silently(f"import os as __os; __os.chdir({kernel.cwd!r}); del __os")
        self.kernels[kernel.id] = kernel
        return kernel

    def get(self, context_id: str) -> Kernel:
        kernel = self.kernels.get(context_id)
        if kernel is None:
            raise HttpError(404, f"context {context_id} not found")
        return kernel

    async def remove(self, context_id: str) -> None:
        kernel = self.get(context_id)
        del self.kernels[context_id]
        if kernel.ws is not None:
            kernel.ws.close()
        await _jupyter("DELETE", f"/api/kernels/{kernel.kernel_id}")

    async def restart(self, context_id: str) -> None:
        kernel = self.get(context_id)
        async with kernel.lock:
            await _jupyter("POST", f"/api/kernels/{kernel.kernel_id}/restart")
            await kernel.connect()
            await kernel.run_silently(f"import os as __os; __os.chdir({kernel.cwd!r}); del __os")


CONTEXTS = Contexts()


class Handler(web.RequestHandler):
    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        message = str(error) if isinstance(error, HttpError) else self._reason
        self.finish({"error": message})

    def _body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise HttpError(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        return body

    def _fail(self, exc: HttpError) -> None:
        self.set_status(exc.status)
        self.finish({"error": str(exc)})


class Health(Handler):
    def get(self) -> None:
        if CONTEXTS.default is None:
            self.set_status(503)
            self.finish("starting")
        else:
            self.finish("OK")


class ContextList(Handler):
    async def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps([k.describe() for k in CONTEXTS.kernels.values()]))

    async def post(self) -> None:
        try:
            body = self._body()
            kernel = await CONTEXTS.create(body.get("language"), body.get("cwd"))
        except HttpError as exc:
            self._fail(exc)
            return
        self.finish(kernel.describe())


class ContextOne(Handler):
    async def delete(self, context_id: str) -> None:
        try:
            await CONTEXTS.remove(context_id)
        except HttpError as exc:
            self._fail(exc)
            return
        self.set_status(204)
        self.finish()


class ContextRestart(Handler):
    async def post(self, context_id: str) -> None:
        try:
            await CONTEXTS.restart(context_id)
        except HttpError as exc:
            self._fail(exc)
            return
        self.set_status(204)
        self.finish()


class Execute(Handler):
    def initialize(self) -> None:
        self.gone = False
        self.running: Kernel | None = None

    def on_connection_close(self) -> None:
        self.gone = True
        if self.running is not None:
            task = asyncio.ensure_future(self.running.interrupt())
            _background.add(task)
            task.add_done_callback(_background.discard)

    async def post(self) -> None:
        try:
            if not await token_accepted(self.request.headers.get("X-Access-Token")):
                raise HttpError(401, "missing or wrong X-Access-Token (the sandbox's envd access token)")
            body = self._body()
            code = body.get("code")
            if not isinstance(code, str):
                raise HttpError(400, "code is required")
            context_id, language = body.get("context_id"), body.get("language")
            if context_id and language:
                raise HttpError(400, "give context_id or language, not both")
            if context_id:
                kernel = CONTEXTS.get(context_id)
            elif language and language.lower() not in LANGUAGES:
                raise HttpError(400, f"language {language!r} is not supported here: only python")
            else:
                if CONTEXTS.default is None:
                    raise HttpError(503, "the default context is not ready yet")
                kernel = CONTEXTS.default
            env_vars = body.get("env_vars") or {}
            if not isinstance(env_vars, dict):
                raise HttpError(400, "env_vars must map names to values")
        except HttpError as exc:
            self._fail(exc)
            return
        self.set_header("Content-Type", "application/x-ndjson")
        async with kernel.lock:
            self.running = kernel
            try:
                if env_vars:
                    await kernel.run_silently(_set_env(env_vars))
                async for line in kernel.execute(code):
                    if self.gone:
                        return
                    self.write(json.dumps(line) + "\n")
                    await self.flush()
                self.write(json.dumps({"type": "end_of_execution"}) + "\n")
            except HttpError as exc:
                self.write(json.dumps({"type": "error", "name": "KernelError", "value": str(exc),
                                       "traceback": ""}) + "\n")
            finally:
                self.running = None
                if env_vars and not self.gone:
                    await kernel.run_silently(_restore_env())
        self.finish()


def _set_env(env_vars: dict[str, Any]) -> str:
    values = {str(k): str(v) for k, v in env_vars.items()}
    return ("import os as __os\n"
            f"__wrenn_saved_env = {{k: __os.environ.get(k) for k in {list(values)!r}}}\n"
            f"__os.environ.update({values!r})\ndel __os\n")


def _restore_env() -> str:
    return ("import os as __os\n"
            "for __k, __v in __wrenn_saved_env.items():\n"
            "    __os.environ.pop(__k, None) if __v is None else __os.environ.__setitem__(__k, __v)\n"
            "del __os, __k, __v, __wrenn_saved_env\n")


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app = web.Application([
        (r"/health", Health),
        (r"/execute", Execute),
        (r"/contexts", ContextList),
        (r"/contexts/([^/]+)", ContextOne),
        (r"/contexts/([^/]+)/restart", ContextRestart),
    ])
    HTTPServer(app, max_buffer_size=512 * 1024 * 1024).listen(PORT, "0.0.0.0")
    while CONTEXTS.default is None:
        try:
            CONTEXTS.default = await CONTEXTS.create("python", DEFAULT_CWD)
        except Exception as exc:  # Jupyter Server still starting
            log.info("waiting for Jupyter Server: %s", exc)
            await asyncio.sleep(0.2)
    log.info("code interpreter ready on :%d (default context %s)", PORT, CONTEXTS.default.id)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
