"""A small Jupyter Server client: the REST calls and the kernel WebSocket `channels` protocol exactly as
the published `wrenn.code_runner` client uses them (`/api/kernels` GET/POST, JSON messages on
`/api/kernels/{id}/channels`, an `execute_request` on the shell channel, IOPub read until `idle`).
Used by the code-runner tests and `bench/code_runner_bench.py`."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect


@dataclass
class Execution:
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)  # (mime bundle, is it the cell's value)
    error: dict[str, Any] | None = None  # ename, evalue, traceback
    timed_out: bool = False

    @property
    def text(self) -> str | None:
        """The cell's value as text (`execute_result`'s text/plain), as the client's `Execution.text`."""
        for result in self.results:
            if result["main"]:
                return str(result["data"].get("text/plain"))
        return None


def execute_request(code: str, msg_type: str = "execute_request") -> dict[str, Any]:
    content: dict[str, Any] = {}
    if msg_type == "execute_request":
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": True}
    return {
        "header": {"msg_id": str(uuid.uuid4()), "msg_type": msg_type, "username": "wrenn-tests",
                   "session": str(uuid.uuid4()), "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                   "version": "5.3"},
        "parent_header": {}, "metadata": {}, "content": content, "buffers": [], "channel": "shell",
    }


class Kernel:
    """One kernel of a Jupyter Server at `base` (http://host:port), over one WebSocket."""

    def __init__(self, base: str, kernel_id: str, ws: ClientConnection) -> None:
        self.base = base
        self.id = kernel_id
        self.ws = ws

    @classmethod
    async def start(cls, http: httpx.AsyncClient, base: str, name: str = "wrenn", open_timeout: float = 30) -> Kernel:
        r = await http.post(f"{base}/api/kernels", json={"name": name})
        r.raise_for_status()
        kernel_id = r.json()["id"]
        return cls(base, kernel_id, await cls._connect(base, kernel_id, open_timeout))

    @classmethod
    async def reuse_or_start(cls, http: httpx.AsyncClient, base: str, name: str = "wrenn") -> Kernel:
        """As the published client's first `run_code`: the first running kernel of `name`, else a new one."""
        r = await http.get(f"{base}/api/kernels")
        r.raise_for_status()
        running = [k["id"] for k in r.json() if k.get("name") == name]
        if not running:
            return await cls.start(http, base, name)
        return cls(base, running[0], await cls._connect(base, running[0], 30))

    @staticmethod
    async def _connect(base: str, kernel_id: str, open_timeout: float) -> ClientConnection:
        return await connect(f"{base.replace('http://', 'ws://', 1)}/api/kernels/{kernel_id}/channels",
                             max_size=None, open_timeout=open_timeout, ping_interval=None)

    async def close(self) -> None:
        await self.ws.close()

    async def run(self, code: str, within: float = 30) -> Execution:
        """Execute `code`; after `within` seconds the execution is marked timed out (and not interrupted)."""
        msg = execute_request(code)
        msg_id = msg["header"]["msg_id"]
        await self.ws.send(json.dumps(msg))
        execution = Execution()
        try:
            async with asyncio.timeout(within):
                while not self._apply(json.loads(await self.ws.recv()), msg_id, execution):
                    pass
        except TimeoutError:
            execution.timed_out = True
        return execution

    async def round_trip(self, msg_type: str = "kernel_info_request") -> None:
        """A request without code (the protocol's floor): sent on shell, answered on shell."""
        msg = execute_request("", msg_type)
        await self.ws.send(json.dumps(msg))
        while True:
            data = json.loads(await self.ws.recv())
            if data.get("parent_header", {}).get("msg_id") == msg["header"]["msg_id"] and \
                    data.get("channel") == "shell":
                return

    async def wait_idle(self, within: float) -> None:
        """Read until any `idle` status (e.g. the end of an interrupted cell)."""
        async with asyncio.timeout(within):
            while True:
                data = json.loads(await self.ws.recv())
                if data.get("msg_type") == "status" and data["content"].get("execution_state") == "idle":
                    return

    @staticmethod
    def _apply(data: dict[str, Any], msg_id: str, execution: Execution) -> bool:
        if data.get("parent_header", {}).get("msg_id") != msg_id:
            return False
        msg_type, content = data.get("msg_type"), data.get("content", {})
        if msg_type == "stream":
            (execution.stderr if content.get("name") == "stderr" else execution.stdout).append(content["text"])
        elif msg_type in ("execute_result", "display_data"):
            execution.results.append({"data": content.get("data", {}), "main": msg_type == "execute_result"})
        elif msg_type == "error":
            execution.error = {"ename": content.get("ename"), "evalue": content.get("evalue"),
                               "traceback": content.get("traceback", [])}
        elif msg_type == "status" and content.get("execution_state") == "idle":
            return True
        return False
