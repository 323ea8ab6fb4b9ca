"""Remote host agents in the agent registry, built from the hosts table (not from registrations
this process saw), so every control-plane replica reaches every host that joined any of them.
A host's client is `HttpAgentClient(http://<address>)` signing with the host's own key
(`hosts/agent_keys.py`); it is replaced when the address or key changes and dropped with the host.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.agent_link.auth import HostKey
from wrenn_platform.agent_link.client import HttpAgentClient
from wrenn_platform.agent_link.constants import IN_PROCESS

from ..db.models import Host
from ..hosts import agent_keys
from ..settings import Settings
from .agents import AgentRegistry

log = logging.getLogger(__name__)


class RemoteAgents:
    def __init__(self, registry: AgentRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self._clients: dict[str, tuple[tuple[str, str], HttpAgentClient]] = {}  # host → ((address, sealed key), client)

    async def sync(self, db: AsyncSession) -> None:
        rows = (await db.execute(select(Host.id, Host.address, Host.agent_key).where(
            Host.agent_key.is_not(None), Host.address.is_not(None), Host.address != IN_PROCESS,
            Host.status != "pending"))).all()
        wanted = {host_id: (str(address), str(sealed)) for host_id, address, sealed in rows}
        for host_id in set(self._clients) - set(wanted):
            await self._drop(host_id)
        for host_id, seen in wanted.items():
            if host_id in self._clients and self._clients[host_id][0] == seen:
                continue
            await self._drop(host_id)
            try:
                key = HostKey(host_id, agent_keys.unseal(self.settings, host_id, seen[1]))
            except Exception as exc:  # sealed under another secret: this replica cannot command the host
                log.error("host %s: its agent key cannot be unsealed here (%s)", host_id, exc)
                continue
            client = HttpAgentClient(f"http://{seen[0]}", key)
            self._clients[host_id] = (seen, client)
            self.registry.add(host_id, client)
            log.info("remote host agent %s at %s", host_id, seen[0])

    async def _drop(self, host_id: str) -> None:
        entry = self._clients.pop(host_id, None)
        if entry is not None:
            self.registry.remove(host_id)
            await entry[1].aclose()

    async def aclose(self) -> None:
        for host_id in list(self._clients):
            await self._drop(host_id)
