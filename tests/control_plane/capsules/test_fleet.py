"""A lost host and its return, with the embedded agent's real capsules: when its heartbeats have
been missing past `host_lost_after_seconds` the host is `offline` and its capsules `missing`; its
next heartbeat brings it back `online` and the reconciler restores each record from what the host
reports (running, paused), or records it `stopped` when the host no longer has it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from wrenn_platform.control_plane.db.engine import make_engine, make_sessionmaker
from wrenn_platform.control_plane.db.models import Capsule, Event, Host
from wrenn_platform.control_plane.db.types import utcnow
from wrenn_platform.control_plane.hosts.fleet import mark_stale_hosts

from .conftest import Env, wait_status


def _at(event: Event, key: str, sub: str) -> str:
    value = event.payload.get(key)
    return str(value.get(sub)) if isinstance(value, dict) else ""


async def test_lost_host_capsules_go_missing_and_are_reconciled_on_return(env: Env, api: httpx.AsyncClient,
                                                                          capsules: Any) -> None:
    running = (await capsules())["id"]
    paused = (await capsules())["id"]
    assert (await api.post(f"/v1/capsules/{paused}/pause")).status_code == 202
    await wait_status(api, paused, "paused")
    engine = make_engine(env.database_url)
    try:
        sessions = make_sessionmaker(engine)
        async with sessions() as db:
            host_id = (await db.execute(select(Host.id))).scalar_one()
            # A record whose capsule the host does not have (its create was in flight when the host was
            # lost); `starting` and fresh, so the reconciler leaves it alone until the host is lost.
            ghost = Capsule(team_id=env.a.team_id, host_id=host_id, status="starting", template="minimal", vcpus=1,
                            memory_mb=128, disk_size_mb=1024, timeout_sec=0, labels={})
            db.add(ghost)
            await db.commit()
            ghost_id = ghost.id
            # The heartbeats stopped an hour ago; aged and swept in one transaction, so the embedded
            # agent's next heartbeat (every second) lands after the sweep, as the host's return.
            await db.execute(update(Host).where(Host.id == host_id)
                             .values(last_heartbeat_at=utcnow() - timedelta(hours=1), status="unreachable"))
            await mark_stale_hosts(db, 30, 60)

        for capsule_id, back in ((running, "running"), (paused, "paused"), (ghost_id, "stopped")):
            body = await wait_status(api, capsule_id, back, within=20)
            assert body["status"] == back

        async with sessions() as db:
            host = await db.get(Host, host_id)
            assert host is not None and host.status == "online"
            events = (await db.execute(select(Event).order_by(Event.id))).scalars().all()
    finally:
        await engine.dispose()

    def moves(resource: str) -> list[tuple[str, str]]:
        return [(_at(e, "metadata", "from"), _at(e, "metadata", "to")) for e in events
                if e.event == "capsule.state.changed" and _at(e, "resource", "id") == resource]

    assert moves(running)[-2:] == [("running", "missing"), ("missing", "running")]
    assert moves(paused)[-2:] == [("paused", "missing"), ("missing", "paused")]
    assert moves(ghost_id) == [("", "starting"), ("starting", "missing"), ("missing", "stopped")]
    host_events = [e.event for e in events if e.event.startswith("host.") and _at(e, "resource", "id") == host_id]
    assert host_events[-2:] == ["host.down", "host.up"]
    # The returned host serves again: the running capsule answers, the paused one resumes there.
    assert (await api.post(f"/v1/capsules/{paused}/resume")).status_code == 202
    await wait_status(api, paused, "running")
