"""Pruning: old published events go unless a pending delivery needs them; the newest stays so the
numbering goes on; finished deliveries go after 30 days; the audit log stays."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import func, select

from wrenn_platform.control_plane.channels.crypto import encrypt_config
from wrenn_platform.control_plane.db.models import AuditLog, Channel, ChannelDelivery, Event
from wrenn_platform.control_plane.db.types import utcnow
from wrenn_platform.control_plane.events.retention import prune

from ..conftest import UserFactory
from .conftest import published


async def test_prune(app: FastAPI, make_user: UserFactory) -> None:
    alice = await make_user()
    old = utcnow() - timedelta(days=40)
    async with app.state.sessionmaker() as db:
        channel = Channel(team_id=alice.team_id, name="c", provider="webhook", events=["host.down"],
                          config_encrypted=encrypt_config(app.state.settings, {"url": "http://127.0.0.1:9/"}))
        db.add(channel)
        events = [Event(team_id=alice.team_id, event="host.up", payload={"event": "host.up"}, created_at=old)
                  for _ in range(4)]
        db.add_all(events)
        await db.commit()
    await published(app)
    async with app.state.sessionmaker() as db:
        ids = [e.id for e in events]
        db.add_all([
            ChannelDelivery(channel_id=channel.id, event_id=ids[1], status="pending", created_at=old),
            ChannelDelivery(channel_id=channel.id, event_id=ids[0], status="delivered", created_at=old),
            ChannelDelivery(channel_id=channel.id, event_id=ids[2], status="failed", created_at=utcnow()),
        ])
        await db.commit()
        audit_before = await db.scalar(select(func.count()).select_from(AuditLog))
    await prune(app.state.sessionmaker, app.state.settings)
    async with app.state.sessionmaker() as db:
        left = set((await db.scalars(select(Event.id))).all())
        deliveries = {(d.event_id, d.status) for d in (await db.scalars(select(ChannelDelivery))).all()}
        audit_after = await db.scalar(select(func.count()).select_from(AuditLog))
    assert ids[1] in left and ids[3] in left  # needed by a pending delivery; the newest
    assert ids[0] not in left and ids[2] not in left
    assert (ids[0], "delivered") not in deliveries and (ids[1], "pending") in deliveries
    assert (ids[2], "failed") in deliveries  # finished, but recent
    assert audit_after == audit_before
