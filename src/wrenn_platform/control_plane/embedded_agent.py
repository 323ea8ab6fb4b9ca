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
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI

from wrenn_platform.agent_link.constants import IN_PROCESS

from .events.wakeup import stop
from .hosts import service as hosts
from .settings import Settings

if TYPE_CHECKING:
    from wrenn_platform.host_agent.join import HostSession

log = logging.getLogger(__name__)

IDENTITY_FILE = "embedded_agent.json"
ADDRESS = IN_PROCESS


async def join(app: FastAPI, http: httpx.AsyncClient) -> HostSession:
    """Register the first time, refresh afterwards (re-registering if the saved identity is unknown)."""
    from wrenn_platform.host_agent.join import HostSession, host_specs, register

    settings: Settings = app.state.settings
    path = settings.data_dir / IDENTITY_FILE
    saved = HostSession.load(path)
    if saved is not None:
        session = HostSession(saved["host_id"], "", saved["refresh_token"], http, path)
        if await session.refresh():
            return session
        log.warning("embedded agent: saved identity refused; registering as a new host")
    async with app.state.sessionmaker() as db:
        _, registration_token = await hosts.create_pending_host(db, created_by="system")
    return await register(http, registration_token, host_specs(settings.data_dir, ADDRESS), path)


@asynccontextmanager
async def embedded_agent(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if not settings.embedded_agent:
        yield
        return
    # Imported only now: a control plane without an embedded agent never loads the agent's code.
    from wrenn_platform.host_agent.daemon import AgentConfig, build_agent
    from wrenn_platform.host_agent.join import forward_events, heartbeat
    from wrenn_platform.host_agent.local_client import LocalAgentClient
    from wrenn_platform.host_agent.warm_pool import PoolSettings

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://embedded-agent",
                                 timeout=30) as http:
        session = await join(app, http)
        agent = build_agent(AgentConfig(data_dir=settings.data_dir, cache_dir=settings.cache_dir,
                                        runtime=settings.runtime, host_id=session.host_id,
                                        min_timeout_sec=settings.capsule_min_timeout_sec,
                                        warm_pool=PoolSettings(sizes=settings.warm_pool_sizes(),
                                                               max_load=settings.warm_pool_max_load)))
        await agent.start()
        client = LocalAgentClient(agent)
        app.state.agents.add(session.host_id, client)
        app.state.embedded_host_id = session.host_id
        tasks = [asyncio.create_task(heartbeat(session, settings.host_heartbeat_seconds), name="host-heartbeat"),
                 asyncio.create_task(forward_events(session, client), name="host-events")]
        log.info("embedded host agent %s joined (%s runtime)", session.host_id, agent.runtime.name)
        try:
            yield
        finally:
            await stop(tasks)
            app.state.agents.remove(session.host_id)
            await agent.close()  # capsules keep running; the next start re-adopts them
