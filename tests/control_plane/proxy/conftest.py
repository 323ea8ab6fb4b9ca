"""The port proxy end to end: `wrenn server` as a process (as `make run` starts it: embedded
agent, namespace runtime, SQLite, the built `minimal` template), two tenants with API keys, and a
capsule of team A running `capsule_app.py` on port 8000 and `python3 -m http.server` on 8001.
Requests go to the server's own port with a `Host: {port}-{id}.localhost:{server port}` header,
or to that name itself (resolved to loopback by libnss-myhostname)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from wrenn_platform.host_agent.templates import TemplateInfo

from ..capsules.conftest import Tenant, _make_tenant, cache_dir_of, scratch_root, wait_status

pytestmark = pytest.mark.root

APP = Path(__file__).with_name("capsule_app.py")
APP_PORT, STATIC_PORT = 8000, 8001


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    database_url: str
    a: Tenant
    b: Tenant

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def host(self, capsule_id: str, port: int) -> str:
        return f"{port}-{capsule_id}.localhost:{self.port}"

    def proxied(self, capsule_id: str, port: int, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        """A client for the capsule's port that dials the server's address and names the port in Host."""
        return httpx.AsyncClient(base_url=self.url, headers={"Host": self.host(capsule_id, port), **(headers or {})},
                                 timeout=60)

    def api(self, tenant: Tenant) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=tenant.headers(), timeout=60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def start_server(root: Path, cache_dir: Path, extra_env: dict[str, str] | None = None,
                 runtime: str = "namespace") -> tuple[int, subprocess.Popen[bytes], Path]:
    port = _free_port()
    log_path = root / "server.log"
    env = {**os.environ, "WRENN_CACHE_DIR": str(cache_dir), "WRENN_HOST_HEARTBEAT_SECONDS": "1",
           "WRENN_RECONCILE_INTERVAL_SECONDS": "1", **(extra_env or {})}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wrenn_platform.cli.main", "server", "--data-dir", str(root / "data"),
             "--port", str(port), "--runtime", runtime, "--insecure-cookies"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return port, proc, log_path
        assert time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.1)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="package")
def server(minimal_template: TemplateInfo) -> Iterator[Server]:
    with scratch_root() as root:
        port, proc, log_path = start_server(root, cache_dir_of(minimal_template),
                                      {"WRENN_PROXY_RESUME_TIMEOUT_SECONDS": "20",
                                             "WRENN_CAPSULE_MIN_TIMEOUT_SEC": "2"})
        try:
            database_url = f"sqlite+aiosqlite:///{root / 'data' / 'wrenn.db'}"
            a = asyncio.run(_make_tenant(database_url, with_session=False))
            b = asyncio.run(_make_tenant(database_url, with_session=False))
            srv = Server(port, proc, log_path, database_url, a, b)
            yield srv
            _destroy_all(srv)
        finally:
            stop_server(proc)


def _destroy_all(srv: Server) -> None:
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        for tenant in (srv.a, srv.b):
            for cap in c.get("/v1/capsules", headers=tenant.headers()).json():
                if cap["status"] not in ("stopped", "stopping"):
                    c.delete(f"/v1/capsules/{cap['id']}", headers=tenant.headers())


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
