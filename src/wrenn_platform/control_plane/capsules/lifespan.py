"""The capsule service's place in the app's life.

- `capsule_service`: the agent registry and `CapsuleService` on `app.state` (started before the
  embedded agent, which registers its client there);
- `capsule_workers` (after the embedded agent): the fleet loop (remote host agents into the
  registry from the hosts table, `remote_agents.py`; host status from heartbeats,
  `hosts/fleet.py`) and the reconciler loop; on shutdown they stop first, then in-flight
  lifecycle tasks are let finish while the agents are still there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from ..events.wakeup import stop
from ..hosts.fleet import mark_stale_hosts
from .agents import AgentRegistry
from .reconciler import reconcile_once
from .remote_agents import RemoteAgents
from .service import CapsuleService

log = logging.getLogger(__name__)


@asynccontextmanager
async def capsule_service(app: FastAPI) -> AsyncIterator[None]:
    app.state.agents = AgentRegistry()
    app.state.capsules = CapsuleService(app.state.sessionmaker, app.state.agents, app.state.settings)
    yield


@asynccontextmanager
async def capsule_workers(app: FastAPI) -> AsyncIterator[None]:
    capsules: CapsuleService = app.state.capsules
    settings = app.state.settings

    remote = RemoteAgents(capsules.agents, settings)

    async def fleet() -> None:  # database only: never held up by a host that does not answer
        while True:
            try:
                async with capsules.sessionmaker() as db:
                    await remote.sync(db)
                    await mark_stale_hosts(db, settings.host_offline_after_seconds, settings.host_lost_after_seconds)
            except Exception:
                log.exception("fleet status update failed")
            await asyncio.sleep(settings.reconcile_interval_seconds)

    async def reconcile() -> None:
        while True:
            try:
                await reconcile_once(capsules)
            except Exception:
                log.exception("reconcile failed")
            await asyncio.sleep(settings.reconcile_interval_seconds)

    tasks = [asyncio.create_task(fleet(), name="host-fleet"),
             asyncio.create_task(reconcile(), name="capsule-reconciler")]
    try:
        yield
    finally:
        await stop(tasks)
        await capsules.aclose()
        await remote.aclose()


async def get_capsules(request: Request) -> CapsuleService:  # async: a sync dependency costs a thread hop
    capsules: CapsuleService = request.app.state.capsules
    return capsules
