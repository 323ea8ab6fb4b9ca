"""`wrenn agent --control-plane URL [--control-plane URL ...]`: a host agent that joined a control plane.

Given several URLs (replicas of one control plane), it uses the first and moves to the next when
the one it uses fails (`control_planes.py`): registration, heartbeats, events and token refresh
alike. The first start registers with the one-time registration token and keeps the identity (host id,
refresh token, host key derived from the token) in `<data_dir>/agent/join.json` (0600); later
starts need no token. While serving, it heartbeats and forwards its sandbox events with the host
JWT, refreshing it when refused (`join.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from wrenn_platform.agent_link.auth import key_from_registration_token

from .control_planes import failover_client
from .join import HostSession, forward_events, heartbeat, host_specs, register
from .local_client import LocalAgentClient
from .service import HostAgent

log = logging.getLogger(__name__)

IDENTITY_FILE = Path("agent") / "join.json"


@dataclass(frozen=True)
class JoinedAgent:
    control_planes: tuple[str, ...]
    identity_path: Path
    host_id: str
    key: bytes

    @classmethod
    async def join(cls, control_planes: list[str], data_dir: Path, registration_token: str | None,
                   address: str) -> JoinedAgent:
        path = data_dir / IDENTITY_FILE
        saved = HostSession.load(path)
        if saved is None:
            if not registration_token:
                raise SystemExit(f"not joined yet ({path} missing): pass --registration-token")
            key = key_from_registration_token(registration_token)
            async with failover_client(control_planes) as http:
                session = await register(http, registration_token, host_specs(data_dir, address), path,
                                         {"agent_key": key.decode()})
            log.info("joined %s as host %s (agent address %s)", ", ".join(control_planes), session.host_id,
                     address)
            saved = HostSession.load(path)
            assert saved is not None
        return cls(tuple(control_planes), path, str(saved["host_id"]), str(saved["agent_key"]).encode())

    @asynccontextmanager
    async def running(self, agent: HostAgent, interval: float) -> AsyncIterator[None]:
        """Heartbeats and event forwarding while the agent serves."""
        saved = HostSession.load(self.identity_path) or {}
        async with failover_client(self.control_planes) as http:
            session = HostSession(self.host_id, "", str(saved.get("refresh_token", "")), http, self.identity_path,
                                  {"agent_key": self.key.decode()})
            # No JWT yet: the first heartbeat's 401 makes it refresh with the saved refresh token.
            tasks = [asyncio.create_task(heartbeat(session, interval), name="host-heartbeat"),
                     asyncio.create_task(forward_events(session, LocalAgentClient(agent)), name="host-events")]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
