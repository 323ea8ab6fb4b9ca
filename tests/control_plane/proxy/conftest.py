"""The port proxy end to end: `wrenn server` as a process (`tests/server_process.py`, as `make run`
starts it: embedded agent, namespace runtime, SQLite, the built `minimal` template), two accounts
(admins of two teams) with API keys, and a
capsule of team A running `capsule_app.py` on port 8000 and `python3 -m http.server` on 8001.
Requests go to the server's own port with a `Host: {port}-{id}.localhost:{server port}` header,
or to that name itself (resolved to loopback by libnss-myhostname)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from wrenn_platform.host_agent.templates import TemplateInfo

from ...server_process import Account, ServerProcess, create_account, open_dir, pinned_cache, start_server
from ..capsules.conftest import wait_status

pytestmark = pytest.mark.root

APP = Path(__file__).with_name("capsule_app.py")
APP_PORT, STATIC_PORT = 8000, 8001


@dataclass
class Server:
    process: ServerProcess
    a: Account
    b: Account

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def url(self) -> str:
        return self.process.url

    def host(self, capsule_id: str, port: int) -> str:
        return f"{port}-{capsule_id}.localhost:{self.port}"

    def proxied(self, capsule_id: str, port: int, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        """A client for the capsule's port that dials the server's address and names the port in Host."""
        return httpx.AsyncClient(base_url=self.url, headers={"Host": self.host(capsule_id, port), **(headers or {})},
                                 timeout=60)

    def api(self, account: Account) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=account.headers(), timeout=60)

    def log(self) -> str:
        return self.process.log_text()

    def rss_kib(self) -> int:
        assert self.process.proc is not None
        for line in Path(f"/proc/{self.process.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@contextlib.contextmanager
def proxy_server(template: TemplateInfo, runtime: str = "namespace", env: dict[str, str] | None = None,
                 others: tuple[TemplateInfo, ...] = ()) -> Iterator[Server]:
    """`wrenn server` (tests/server_process.py) with two accounts, each an admin of its own team, and
    the platform templates `others` besides `minimal`; every capsule destroyed and nothing left
    mounted afterwards."""
    root = open_dir("proxy-")
    process = start_server(root / "data", runtime=runtime, cache_dir=pinned_cache(template, root, *others), env=env)
    try:
        srv = Server(process, create_account(process), create_account(process))
        yield srv
        _destroy_all(srv)
    finally:
        process.stop()
    leftover = [line for line in Path("/proc/self/mounts").read_text().splitlines() if f" {root}/" in line]
    if not leftover:
        shutil.rmtree(root, ignore_errors=True)
    assert not leftover, f"mounts left under {root}: {leftover}"


@pytest.fixture(scope="package")
def server(minimal_template: TemplateInfo) -> Iterator[Server]:
    with proxy_server(minimal_template, env={"WRENN_PROXY_RESUME_TIMEOUT_SECONDS": "20",
                                             "WRENN_CAPSULE_MIN_TIMEOUT_SEC": "2"}) as srv:
        yield srv


def _destroy_all(srv: Server) -> None:
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        for account in (srv.a, srv.b):
            for cap in c.get("/v1/capsules", headers=account.headers()).json():
                if cap["status"] not in ("stopped", "stopping"):
                    c.delete(f"/v1/capsules/{cap['id']}", headers=account.headers())
        deadline = time.monotonic() + 60
        for account in (srv.a, srv.b):
            for cap in c.get("/v1/capsules", headers=account.headers()).json():
                while cap["status"] == "stopping" and time.monotonic() < deadline:
                    time.sleep(0.1)
                    cap = c.get(f"/v1/capsules/{cap['id']}", headers=account.headers()).json()


async def create_capsule(api: httpx.AsyncClient, **body: Any) -> str:
    resp = await api.post("/v1/capsules", json=body)
    assert resp.status_code == 202, resp.text
    capsule_id: str = resp.json()["id"]
    await wait_status(api, capsule_id, "running")
    return capsule_id


async def start_servers(api: httpx.AsyncClient, capsule_id: str) -> None:
    """capsule_app.py on APP_PORT and `python3 -m http.server` on STATIC_PORT, serving a file."""
    resp = await api.post(f"/v1/capsules/{capsule_id}/files/write",
                          files={"file": ("app.py", APP.read_bytes())}, data={"path": "/tmp/app.py"})
    assert resp.status_code == 204, resp.text
    resp = await api.post(f"/v1/capsules/{capsule_id}/files/write",
                          files={"file": ("index.txt", b"served by http.server\n")},
                          data={"path": "/tmp/site/index.txt"})
    assert resp.status_code == 204, resp.text
    for cmd, args in (("python3", ["/tmp/app.py", str(APP_PORT)]),
                      ("python3", ["-m", "http.server", str(STATIC_PORT), "--directory", "/tmp/site"])):
        resp = await api.post(f"/v1/capsules/{capsule_id}/exec", json={"cmd": cmd, "args": args, "background": True})
        assert resp.status_code == 202, resp.text
    for port in (APP_PORT, STATIC_PORT):
        await wait_listening(api, capsule_id, port)


async def wait_listening(api: httpx.AsyncClient, capsule_id: str, port: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        out = await api.post(f"/v1/capsules/{capsule_id}/exec", json={
            "cmd": "python3", "args": ["-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)"]})
        if out.status_code == 200 and out.json()["exit_code"] == 0:
            return
        assert time.monotonic() < deadline, out.text
        await asyncio.sleep(0.1)


@pytest.fixture(scope="package")
def served(server: Server) -> str:
    """A running capsule of team A with both servers listening."""

    async def make() -> str:
        async with server.api(server.a) as api:
            capsule_id = await create_capsule(api)
            await start_servers(api, capsule_id)
            return capsule_id

    return asyncio.run(make())


@pytest.fixture
async def api_a(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with server.api(server.a) as c:
        yield c
