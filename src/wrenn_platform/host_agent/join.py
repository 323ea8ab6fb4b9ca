"""A host agent's side of the contract's join flow with a control plane: register with a one-time
registration token, refresh the host JWT, heartbeat, forward autonomous sandbox events.

Used by the embedded agent of `wrenn server` (over the app's own ASGI stack) and by a remote
`wrenn agent --control-plane URL --registration-token TOKEN` (over HTTP). The identity file (0600)
keeps the host id and the current refresh token, and for a remote agent the host key
(`agent_key`), so restarts keep the host, its capsules and its key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .local_client import LocalAgentClient

log = logging.getLogger(__name__)



def host_specs(data_dir: Path, address: str) -> dict[str, object]:
    """The body of `POST /v1/hosts/register` less the token: this machine and where its agent listens."""
    memory_mb = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mb = int(line.split()[1]) // 1024
    disk_gb = shutil.disk_usage(data_dir).total // (1024**3)
    return {"arch": platform.machine(), "cpu_cores": os.cpu_count() or 1, "memory_mb": memory_mb,
            "disk_gb": disk_gb, "address": address}


@dataclass
class HostSession:
    """The host's credentials, and a client that calls the control plane the way an agent does."""

    host_id: str
    token: str
    refresh_token: str
    http: httpx.AsyncClient
    identity_path: Path
    extra: dict[str, Any] = field(default_factory=dict)  # saved alongside (a remote agent's key)
    _refreshing: asyncio.Lock = field(default_factory=asyncio.Lock)  # heartbeat and events share the tokens

    @staticmethod
    def load(path: Path) -> dict[str, Any] | None:
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def save(self) -> None:
        data = json.dumps({**self.extra, "host_id": self.host_id, "refresh_token": self.refresh_token}).encode()
        self.identity_path.parent.mkdir(parents=True, exist_ok=True)
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
                log.error("host agent: token refresh refused (%s): %s", resp.status_code, resp.text[:200])
                return False
            data = resp.json()
            self.token, self.refresh_token = data["token"], data["refresh_token"]
            self.save()
            return True


async def register(http: httpx.AsyncClient, registration_token: str, specs: dict[str, object],
                   identity_path: Path, extra: dict[str, Any] | None = None) -> HostSession:
    resp = await http.post("/v1/hosts/register", json={"token": registration_token, **specs})
    if resp.status_code != 201:
        raise RuntimeError(f"host agent could not register: {resp.status_code} {resp.text[:200]}")
    data = resp.json()
    session = HostSession(data["host"]["id"], data["token"], data["refresh_token"], http, identity_path,
                          dict(extra or {}))
    session.save()
    return session


async def heartbeat(session: HostSession, interval: float) -> None:
    while True:
        try:
            resp = await session.post(f"/v1/hosts/{session.host_id}/heartbeat")
            if resp.status_code == 401:
                # Even a refreshed token is refused: an admin deleted this host (which also took it
                # out of scheduling). Re-registering would undo that decision: stop heartbeating.
                log.error("host %s was deleted or its credentials revoked; it takes no capsules "
                          "until it joins again", session.host_id)
                return
            if resp.status_code != 204:
                log.warning("heartbeat answered %s", resp.status_code)
        except Exception:
            log.exception("heartbeat failed")
        await asyncio.sleep(interval)


async def forward_events(session: HostSession, client: LocalAgentClient) -> None:
    async for event in client.events(after=0):  # 0: also what the agent reported before we listened
        try:
            resp = await session.post("/v1/hosts/sandbox-events", event.contract_body())
            if resp.status_code != 204:
                log.warning("sandbox event %s answered %s", event.event, resp.status_code)
        except Exception:
            log.exception("forwarding sandbox event %s failed", event.event)
