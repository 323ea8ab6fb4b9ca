"""The embedded host agent of `wrenn server`: a `HostAgent` in this process that joins the control
plane through the contract's own host flow, exactly as a remote agent would.

At start: the first time, a pending host and a one-time registration token are created and
exchanged at `POST /v1/hosts/register` for the host JWT and a refresh token; later starts exchange
the saved refresh token at `POST /v1/hosts/auth/refresh` (so the host, and its capsules, keep their
id across restarts). The agent then heartbeats (`POST /v1/hosts/{id}/heartbeat`) and forwards its
autonomous events to `POST /v1/hosts/sandbox-events`. All of these go through the app's own ASGI
stack, in process. Capsule operations use `LocalAgentClient`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi import FastAPI

from wrenn_platform.host_agent.client import LocalAgentClient
from wrenn_platform.host_agent.daemon import AgentConfig, build_agent

from .hosts import service as hosts
from .services import service
from .settings import Settings

log = logging.getLogger(__name__)

IDENTITY_FILE = "embedded_agent.json"
ADDRESS = "in-process"


@dataclass
class HostSession:
    """The embedded host's credentials, and a client that calls the app the way an agent would."""

    host_id: str
    token: str
    refresh_token: str
    http: httpx.AsyncClient
    identity_path: Path
    _refreshing: asyncio.Lock = field(default_factory=asyncio.Lock)  # heartbeat and events share the tokens

    def save(self) -> None:
        data = json.dumps({"host_id": self.host_id, "refresh_token": self.refresh_token}).encode()
        tmp = self.identity_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, self.identity_path)

    async def post(self, path: str, body: object | None = None) -> httpx.Response:
        """POST as the host; refreshes the JWT once if it was refused."""
        resp = await self.http.post(path, json=body, headers={"X-Host-Token": self.token})
        if resp.status_code == 401 and await self.refresh():
            resp = await self.http.post(path, json=body, headers={"X-Host-Token": self.token})
        return resp

    async def refresh(self) -> bool:
        used = self.token
        async with self._refreshing:
            if self.token != used:
                return True  # refreshed by the other task meanwhile
            resp = await self.http.post("/v1/hosts/auth/refresh", json={"refresh_token": self.refresh_token})
            if resp.status_code != 200:
                log.error("embedded agent: token refresh refused (%s): %s", resp.status_code, resp.text[:200])
                return False
            data = resp.json()
            self.token, self.refresh_token = data["token"], data["refresh_token"]
            self.save()
            return True


def _specs(settings: Settings) -> dict[str, object]:
    memory_mb = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mb = int(line.split()[1]) // 1024
    disk_gb = shutil.disk_usage(settings.data_dir).total // (1024**3)
    return {"arch": platform.machine(), "cpu_cores": os.cpu_count() or 1, "memory_mb": memory_mb,
            "disk_gb": disk_gb, "address": ADDRESS}


async def join(app: FastAPI, http: httpx.AsyncClient) -> HostSession:
    """Register the first time, refresh afterwards (re-registering if the saved identity is unknown)."""
    settings: Settings = app.state.settings
    path = settings.data_dir / IDENTITY_FILE
    if path.exists():
        saved = json.loads(path.read_text())
        session = HostSession(saved["host_id"], "", saved["refresh_token"], http, path)
        if await session.refresh():
            return session
        log.warning("embedded agent: saved identity refused; registering as a new host")
    async with app.state.sessionmaker() as db:
        _, registration_token = await hosts.create_pending_host(db, created_by="system")
    resp = await http.post("/v1/hosts/register", json={"token": registration_token, **_specs(settings)})
    if resp.status_code != 201:
        raise RuntimeError(f"embedded agent could not register: {resp.status_code} {resp.text[:200]}")
    data = resp.json()
    session = HostSession(data["host"]["id"], data["token"], data["refresh_token"], http, path)
    session.save()
    return session


async def _heartbeat(session: HostSession, interval: float) -> None:
    while True:
        try:
            resp = await session.post(f"/v1/hosts/{session.host_id}/heartbeat")
            if resp.status_code == 401:
                # Even a refreshed token is refused: an admin deleted this host (which also took it
                # out of scheduling). Re-registering would undo that decision: stop heartbeating.
                log.error("embedded host %s was deleted or its credentials revoked; it takes no capsules "
                          "until the server restarts (and registers it as a new host)", session.host_id)
                return
            if resp.status_code != 204:
                log.warning("embedded agent heartbeat answered %s", resp.status_code)
        except Exception:
            log.exception("embedded agent heartbeat failed")
        await asyncio.sleep(interval)


async def _forward_events(session: HostSession, client: LocalAgentClient) -> None:
    async for event in client.events(after=0):  # 0: also what the agent reported before we listened
        try:
            resp = await session.post("/v1/hosts/sandbox-events", event.contract_body())
            if resp.status_code != 204:
                log.warning("sandbox event %s answered %s", event.event, resp.status_code)
        except Exception:
            log.exception("forwarding sandbox event %s failed", event.event)


@service(50)
@asynccontextmanager
async def embedded_agent(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if not settings.embedded_agent:
        yield
        return
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://embedded-agent",
                                 timeout=30) as http:
        session = await join(app, http)
        agent = build_agent(AgentConfig(data_dir=settings.data_dir, cache_dir=settings.cache_dir,
                                        runtime=settings.runtime, host_id=session.host_id,
                                        min_timeout_sec=settings.capsule_min_timeout_sec))
        await agent.start()
        client = LocalAgentClient(agent)
        app.state.agents.add(session.host_id, client)
        app.state.embedded_host_id = session.host_id
        tasks = [asyncio.create_task(_heartbeat(session, settings.host_heartbeat_seconds), name="host-heartbeat"),
                 asyncio.create_task(_forward_events(session, client), name="host-events")]
        log.info("embedded host agent %s joined (%s runtime)", session.host_id, agent.runtime.name)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            app.state.agents.remove(session.host_id)
            await agent.close()  # capsules keep running; the next start re-adopts them
