"""Events and audit entries derived from database changes (`events/derive.py`), written the ways the
other modules write them: ORM objects, attribute changes, bulk conditional UPDATEs and DELETEs."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from wrenn_platform.control_plane.audit.actor import Actor, acting_as
from wrenn_platform.control_plane.db.models import AuditLog, Capsule, Event, Host, Template
from wrenn_platform.control_plane.events.relay import RelayConflict, publish_pending

from ..conftest import UserFactory
from .conftest import move_capsule, new_capsule, published


async def _events(app: FastAPI, team_id: str | None) -> list[tuple[str, str | None, dict[str, str]]]:
    async with app.state.sessionmaker() as db:
        rows = (await db.scalars(select(Event).where(Event.team_id == team_id).order_by(Event.id))).all()
    return [(r.event, r.payload.get("outcome"), r.payload["metadata"]) for r in rows]


async def _audit(app: FastAPI, team_id: str | None) -> list[tuple[str, str, str, str]]:
    async with app.state.sessionmaker() as db:
        rows = (await db.scalars(select(AuditLog).where(AuditLog.team_id == team_id)
                                 .order_by(AuditLog.created_at, AuditLog.id))).all()
    return [(r.resource_type, r.action, r.status, r.actor_type) for r in rows]


async def test_capsule_actions_end_with_their_outcome(app: FastAPI, make_user: UserFactory) -> None:
    alice = await make_user()
    user = Actor("user", alice.id, "Alice")
    with acting_as(user):
        capsule = await new_capsule(app, alice.team_id)
        await move_capsule(app, capsule, "running", "pausing")
    await move_capsule(app, capsule, "running", error="agent: pause failed")  # pausing → running: pause failed
    with acting_as(user):
        await move_capsule(app, capsule, "stopping")
    await move_capsule(app, capsule, "stopped")
    actions = [(name, outcome) for name, outcome, _ in await _events(app, alice.team_id)
               if name != "capsule.state.changed"]
    assert actions == [("capsule.create", "success"), ("capsule.pause", "error"), ("capsule.destroy", "success")]
    async with app.state.sessionmaker() as db:
        failed = (await db.scalars(select(Event).where(Event.event == "capsule.pause"))).one()
    assert failed.payload["error"] == "agent: pause failed" and failed.payload["sandbox"]["status"] == "running"
    assert [(a, s, who) for kind, a, s, who in await _audit(app, alice.team_id) if kind == "capsule"] == [
        ("create", "success", "user"), ("pause", "success", "user"), ("pause", "failure", "system"),
        ("destroy", "success", "user")]


async def test_an_unchanged_or_unmatched_update_records_nothing(app: FastAPI, make_user: UserFactory) -> None:
    alice = await make_user()
    capsule = await new_capsule(app, alice.team_id, status="running")
    before = await _events(app, alice.team_id)
    async with app.state.sessionmaker() as db:
        # The capsule service's conditional UPDATE that lost a race: no row matches.
        await db.execute(update(Capsule).where(Capsule.id == capsule, Capsule.status == "paused")
                         .values(status="resuming"))
        await db.execute(update(Capsule).where(Capsule.id == capsule).values(status="running"))  # same status
        row = await db.get(Capsule, capsule)
        assert row is not None
        row.last_active_at = row.created_at  # not a tracked column
        await db.commit()
    assert await _events(app, alice.team_id) == before


async def test_snapshot_templates(app: FastAPI, make_user: UserFactory) -> None:
    alice = await make_user()
    async with app.state.sessionmaker() as db:
        good = Template(team_id=alice.team_id, name="good", source_capsule_id="cl-1")
        bad = Template(team_id=alice.team_id, name="bad")
        db.add_all([good, bad])
        await db.commit()  # names reserved: the snapshot is being written
        good.size_bytes = 123456
        await db.commit()  # written
        await db.execute(delete(Template).where(Template.id == bad.id))  # failed: the row goes
        await db.commit()
        await db.execute(delete(Template).where(Template.id == good.id))  # deleted later
        await db.commit()
    got = await _events(app, alice.team_id)
    assert [(n, o) for n, o, _ in got] == [("template.snapshot.create", "success"),
                                          ("template.snapshot.create", "error"),
                                          ("template.snapshot.delete", "success")]
    assert got[0][2]["source_capsule_id"] == "cl-1"


async def test_hosts_up_and_down(app: FastAPI, make_user: UserFactory) -> None:
    alice = await make_user()
    async with app.state.sessionmaker() as db:
        byoc = Host(type="byoc", team_id=alice.team_id, status="pending", address="10.0.0.9:9000")
        shared = Host(status="pending")
        db.add_all([byoc, shared])
        await db.commit()
        byoc.status = shared.status = "online"
        await db.commit()
        await db.execute(update(Host).values(last_heartbeat_at=byoc.created_at))  # heartbeat: no event
        await db.execute(update(Host).where(Host.status == "online").values(status="unreachable"))
        await db.commit()
    assert await _events(app, alice.team_id) == [
        ("host.up", None, {"status": "online", "host_ip": "10.0.0.9:9000"}),
        ("host.down", None, {"status": "unreachable", "host_ip": "10.0.0.9:9000", "reason": "unreachable"})]
    assert [n for n, _, _ in await _events(app, None)] == ["host.up", "host.down"]  # a platform host: admins'


async def test_racing_relays_number_every_event_once_without_gaps(app: FastAPI, make_user: UserFactory) -> None:
    """Several relays at once (as several replicas run them): each event gets one number, and the
    numbers are 1..n in id order."""
    alice = await make_user()

    async def relay() -> None:
        for _ in range(200):
            with contextlib.suppress(RelayConflict, IntegrityError, OperationalError):
                await publish_pending(app.state.sessionmaker, app.state.bus)
            await asyncio.sleep(0)

    async def writer() -> None:
        for _ in range(15):
            await new_capsule(app, alice.team_id)

    await asyncio.gather(writer(), writer(), writer(), relay(), relay(), relay(), relay())
    await published(app)
    async with app.state.sessionmaker() as db:
        rows = (await db.execute(select(Event.id, Event.seq).order_by(Event.id))).all()
    assert len(rows) == 45
    seqs = [seq for _, seq in rows]
    assert sorted(seqs) == list(range(1, 46))


async def test_racing_conditional_updates_record_one_outcome(app: FastAPI, make_user: UserFactory) -> None:
    """Two writers finish the same pause at once (the capsule service and the reconciler, say): the
    one whose conditional UPDATE wins records the outcome; the other changes nothing and records nothing."""
    alice = await make_user()
    capsules = [await new_capsule(app, alice.team_id, status="pausing") for _ in range(8)]

    async def finish(capsule_id: str, status: str) -> None:
        async with app.state.sessionmaker() as db:
            await db.execute(update(Capsule).where(Capsule.id == capsule_id, Capsule.status == "pausing")
                             .values(status=status))
            await db.commit()

    await asyncio.gather(*(finish(c, s) for c in capsules for s in ("paused", "error")))
    async with app.state.sessionmaker() as db:
        rows = (await db.scalars(select(Event).where(Event.event == "capsule.pause"))).all()
        final = {c.id: c.status for c in (await db.scalars(select(Capsule))).all()}
    outcomes = {r.payload["resource"]["id"]: r.payload["outcome"] for r in rows}
    assert len(rows) == len(capsules) == len(outcomes)
    assert all(outcomes[c] == ("success" if final[c] == "paused" else "error") for c in capsules)
