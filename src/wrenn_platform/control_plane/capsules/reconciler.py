"""Keeps capsule records true to what the hosts report.

Every few seconds, for each host this control plane reaches: a record the host no longer has
becomes `missing` (or `stopped` if it was being destroyed, `error` if its create never finished);
a record in a transient status left behind (agent unreachable, control plane restarted) takes the
host's view; a capsule the host runs but the records call stopped (or do not know) is destroyed.
Hosts whose heartbeats stopped (marked `unreachable`, later `offline` by `hosts/fleet.py`) are not
asked until they heartbeat again; a record made `missing` by its host's loss is `stopped` if the
returning host no longer has it. Records with a lifecycle task in flight in this process are left
to that task.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from wrenn_platform.agent_link.client import AgentClient
from wrenn_platform.wire.agent import AgentError, CapsuleInfo, NotFound

from ..db.models import Capsule, Host
from ..db.types import utcnow
from ..hosts.fleet import HOST_LOST, SILENT
from .service import CapsuleService, info_values

log = logging.getLogger(__name__)


LIST_TIMEOUT_S = 10.0
# A create another replica has just recorded may not have reached the host yet.
STARTING_GRACE = timedelta(seconds=30)


def _settle(row: Capsule, info: CapsuleInfo | None) -> dict[str, Any] | None:
    """New values for a record given the host's view of it (None: host does not have it)."""
    if info is None:
        if row.status == "stopping":
            return {"status": "stopped", "stopped_at": utcnow()}
        if row.status == "starting":
            if utcnow() - row.last_updated < STARTING_GRACE:
                return None
            return {"status": "error", "error": "the create did not complete on the host"}
        if row.status == "missing" and row.error == HOST_LOST:
            return {"status": "stopped", "stopped_at": utcnow(), "error": "the host returned without this capsule"}
        if row.status not in ("missing", "error"):
            return {"status": "missing", "error": "the host no longer has this capsule"}
        return None
    if row.status == "stopping":
        return None  # destroy is retried by the caller
    values = info_values(info)
    changed = {k: v for k, v in values.items() if getattr(row, k) != v}
    if "status" in changed and info.status != "error":
        changed["error"] = ""
    return changed or None


async def reconcile_host(service: CapsuleService, host_id: str, client: AgentClient) -> None:
    try:
        infos = {info.id: info for info in await asyncio.wait_for(client.list_capsules(), LIST_TIMEOUT_S)}
    except (AgentError, httpx.HTTPError, OSError, TimeoutError) as exc:
        log.warning("reconcile: host %s unreachable: %s", host_id, exc)
        return
    async with service.sessionmaker() as db:
        rows = (await db.execute(select(Capsule).where(Capsule.host_id == host_id, Capsule.status != "stopped"))
                ).scalars().all()
    retry_destroy: list[str] = []
    for row in rows:
        info = infos.pop(row.id, None)
        if service.busy(row.id):
            continue
        values = _settle(row, info)
        if values is not None:
            if values.get("error"):  # a failure found out here: as visible as one the operation met
                log.warning("reconcile: capsule %s %s → %s: %s", row.id, row.status,
                            values.get("status", row.status), values["error"])
            else:
                log.info("reconcile: capsule %s %s → %s", row.id, row.status, values.get("status", row.status))
            await service.write(row.id, values, only_if=row.status)
        elif info is not None and row.status == "stopping":
            retry_destroy.append(row.id)
    for capsule_id in retry_destroy + list(infos):
        if service.busy(capsule_id):
            continue
        await _destroy_orphan(service, host_id, client, capsule_id)


async def _destroy_orphan(service: CapsuleService, host_id: str, client: AgentClient, capsule_id: str) -> None:
    async with service.lock(capsule_id):
        async with service.sessionmaker() as db:
            row = await db.get(Capsule, capsule_id)
        if row is not None and row.status not in ("stopped", "stopping"):
            return  # a record appeared (create committed meanwhile): not an orphan
        log.warning("reconcile: destroying %s on %s (%s)", capsule_id, host_id,
                    "being destroyed" if row is not None and row.status == "stopping" else "no live record")
        try:
            await client.destroy(capsule_id)
        except NotFound:
            pass
        except (AgentError, httpx.HTTPError, OSError) as exc:
            log.warning("reconcile: destroying %s failed: %s", capsule_id, exc)
            return
        if row is not None and row.status == "stopping":
            await service.write(capsule_id, {"status": "stopped", "stopped_at": utcnow()}, only_if="stopping")


async def reconcile_once(service: CapsuleService) -> None:
    """One pass over every host this process reaches, concurrently: a host that does not answer
    delays only itself, for at most `LIST_TIMEOUT_S`."""
    async with service.sessionmaker() as db:
        silent = set((await db.execute(select(Host.id).where(Host.status.in_(SILENT)))).scalars())
    await asyncio.gather(*(reconcile_host(service, host_id, client)
                           for host_id, client in service.agents.items() if host_id not in silent))
