"""A remote host agent: a real `wrenn agent --control-plane URL --registration-token TOKEN`
process joins a `wrenn server` that has no embedded agent; the server reaches it over HTTP with
the host's own key, capsules created through the public API land on it and work, its heartbeats
keep it online; a client signing with another key is refused by the agent. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from wrenn_platform.agent_link.auth import HostKey
from wrenn_platform.agent_link.client import HttpAgentClient
from wrenn_platform.host_agent.templates import TemplateInfo
from wrenn_platform.wire.agent import AgentError

from ..admin_capsules.conftest import _make_admin
from .conftest import (
    READY_TIMEOUT_S,
    ServerThread,
    _make_tenant,
    cache_dir_of,
    make_settings,
    scratch_database,
    scratch_root,
    wait_status,
)

pytestmark = pytest.mark.root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def agent_process(root: Path, cache_dir: Path, control_plane: str | list[str], token: str, listen: str,
                  netns: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`wrenn agent` joined to `control_plane` (several: one `--control-plane` each), logging to root/agent.log."""
    # nsenter, not `ip netns exec`: that one remounts /sys, hiding the cgroup tree the runtime uses.
    inside = ["nsenter", f"--net=/run/netns/{netns}"] if netns else []
    urls = [control_plane] if isinstance(control_plane, str) else control_plane
    with open(root / "agent.log", "ab") as log:
        proc = subprocess.Popen(
            [*inside, sys.executable, "-m", "wrenn_platform.cli.main", "agent", "--data-dir", str(root / "agent-data"),
             "--cache-dir", str(cache_dir), "--listen", listen, "--runtime", "namespace",
             *(arg for url in urls for arg in ("--control-plane", url)),
             "--registration-token", token, "--heartbeat-seconds", "1", "--log-level", "info"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


class Served(Protocol):
    @property
    def url(self) -> str: ...


@dataclass
class Rig:
    server: Served  # a ServerThread, or a control plane in a process of its own
    root: Path
    api_key: str
    admin_sid: str
    admin_csrf: str

    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.url, headers={"X-API-Key": self.api_key}, timeout=60)

    def admin(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.url, headers={"X-CSRF-Token": self.admin_csrf}, timeout=60,
                                 cookies={"wrenn_sid": self.admin_sid, "wrenn_csrf": self.admin_csrf})


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_remote_agent_joins_and_runs_capsules(backend: str, minimal_template: TemplateInfo) -> None:
    cache_dir = cache_dir_of(minimal_template)
    with scratch_root() as root, scratch_database(backend, root) as database_url:
        tenant = asyncio.run(_make_tenant(database_url, with_session=False))
        admin = asyncio.run(_make_admin(database_url))
        server = ServerThread(make_settings(root / "data", database_url, cache_dir, embedded_agent=False))
        server.start()
        try:
            rig = Rig(server, root, tenant.api_key, admin.session_id or "", admin.csrf or "")
            host_id, token = asyncio.run(_create_host(rig))
            listen = f"127.0.0.1:{_free_port()}"
            with agent_process(root, cache_dir, server.url, token, listen) as proc:
                asyncio.run(_scenario(rig, proc, host_id, listen))
        finally:
            server.stop()


async def _create_host(rig: Rig) -> tuple[str, str]:
    async with rig.api() as api, rig.admin() as admin:
        r = await api.post("/v1/capsules", json={})
        assert r.status_code == 502 and r.json()["error"]["code"] == "no_host_available"  # no host yet
        created = await admin.post("/v1/hosts", json={"type": "regular"})
        assert created.status_code == 201, created.text
        return created.json()["host"]["id"], created.json()["registration_token"]


async def _scenario(rig: Rig, proc: subprocess.Popen[bytes], host_id: str, listen: str) -> None:
    log = rig.root / "agent.log"
    async with rig.api() as api, rig.admin() as admin:
        deadline = time.monotonic() + 60
        while (await admin.get(f"/v1/hosts/{host_id}")).json()["status"] != "online":
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.2)
        host = (await admin.get(f"/v1/hosts/{host_id}")).json()
        assert host["address"] == listen and host["memory_mb"] > 0
        first_beat = host["last_heartbeat_at"]

        capsule_id, _ = await _create_when_reachable(api, log)
        try:
            r = await api.post(f"/v1/capsules/{capsule_id}/exec", json={"cmd": "sh", "args": ["-c", "echo hi"]})
            assert r.status_code == 200 and r.json()["stdout"] == "hi\n", r.text
            assert (await api.post(f"/v1/capsules/{capsule_id}/pause")).status_code == 202
            await wait_status(api, capsule_id, "paused")
            assert (await api.post(f"/v1/capsules/{capsule_id}/resume")).status_code == 202
            await wait_status(api, capsule_id, "running")

            # The agent obeys only its own key.
            impostor = HttpAgentClient(f"http://{listen}", HostKey(host_id, b"x" * 64))
            try:
                with pytest.raises(AgentError):
                    await impostor.list_capsules()
            finally:
                await impostor.aclose()
        finally:
            assert (await api.delete(f"/v1/capsules/{capsule_id}")).status_code == 202
            await wait_status(api, capsule_id, "stopped")
        later = (await admin.get(f"/v1/hosts/{host_id}")).json()
        assert later["status"] == "online" and later["last_heartbeat_at"] > first_beat
        assert proc.poll() is None, log.read_text()


async def _create_when_reachable(api: httpx.AsyncClient, log: Path,
                                 within: float = READY_TIMEOUT_S) -> tuple[str, float]:
    """A running capsule, and how long it took from its 202 to `running`. The server adds the new
    host's client on its next reconcile pass (every second here)."""
    deadline = time.monotonic() + 30
    while True:
        r = await api.post("/v1/capsules", json={})
        if r.status_code == 202:
            capsule_id = str(r.json()["id"])
            accepted = time.monotonic()
            if (await wait_status(api, capsule_id, "running", "error", within=within))["status"] == "error":
                agent_log = await asyncio.to_thread(log.read_text)
                raise AssertionError(f"the create failed on the agent: {agent_log[-3000:]}")
            return capsule_id, time.monotonic() - accepted
        assert r.json()["error"]["code"] == "no_host_available", r.text
        assert time.monotonic() < deadline, r.text
        await asyncio.sleep(0.3)
