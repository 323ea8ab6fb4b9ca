"""The dispatcher: delivers queued events to channels, with retries, one worker per channel.

The relay queues a `ChannelDelivery` per (event, subscribed channel) in the event's publishing
transaction. Here, a loop claims due deliveries with a lease (a conditional UPDATE, so across
replicas each is claimed once) and hands them to the worker task of their channel; each worker
sends its channel's deliveries one after another. A slow or failing channel only occupies its
own worker: nothing else waits for it. Every attempt writes a `ChannelDeliveryAttempt`; a failed
attempt that may succeed later is retried after `channel_backoff_seconds * 2**(attempt-1)`
(capped), until `channel_max_attempts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..bus import Bus
from ..db.models import Channel, ChannelDelivery, ChannelDeliveryAttempt, Event
from ..db.types import utcnow
from ..events.wakeup import follow_events, stop
from ..settings import Settings
from .crypto import decrypt_config
from .providers import build
from .sender import Result, send

log = logging.getLogger(__name__)

CLAIM_BATCH = 100


def backoff(settings: Settings, attempt: int, retry_after: float | None = None) -> float:
    delay = min(settings.channel_backoff_seconds * 2 ** (attempt - 1), settings.channel_backoff_max_seconds)
    return max(delay, min(retry_after or 0.0, settings.channel_backoff_max_seconds))


class Dispatcher:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings,
                 client: httpx.AsyncClient) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._client = client
        self._workers: dict[str, asyncio.Task[None]] = {}

    async def claim(self) -> dict[str, list[int]]:
        """Lease the due deliveries of channels without a running worker here: {channel: [ids]}."""
        now = utcnow()
        token = secrets.token_hex(8)
        lease = now + timedelta(seconds=self._settings.channel_timeout_seconds * (CLAIM_BATCH + 1))
        free = or_(ChannelDelivery.lease_until.is_(None), ChannelDelivery.lease_until < now)
        due = (select(ChannelDelivery.id)
               .where(ChannelDelivery.status == "pending", ChannelDelivery.next_attempt_at <= now, free)
               .order_by(ChannelDelivery.id).limit(CLAIM_BATCH))
        if self._workers:
            due = due.where(ChannelDelivery.channel_id.notin_(list(self._workers)))
        async with self._sessionmaker() as db:
            ids = list((await db.scalars(due)).all())
            if not ids:
                return {}
            # `free` again in the UPDATE: of two replicas claiming the same row, only one matches.
            await db.execute(update(ChannelDelivery).where(ChannelDelivery.id.in_(ids), free)
                             .values(lease_owner=token, lease_until=lease)
                             .execution_options(synchronize_session=False))
            await db.commit()
            rows = (await db.execute(select(ChannelDelivery.channel_id, ChannelDelivery.id)
                                     .where(ChannelDelivery.lease_owner == token).order_by(ChannelDelivery.id))).all()
        claimed: dict[str, list[int]] = {}
        for channel_id, delivery_id in rows:
            claimed.setdefault(channel_id, []).append(delivery_id)
        return claimed

    async def dispatch_once(self) -> None:
        for channel_id, ids in (await self.claim()).items():
            task = asyncio.create_task(self._work(channel_id, ids), name=f"channel-{channel_id}")
            self._workers[channel_id] = task
            task.add_done_callback(self._forget(channel_id))

    def _forget(self, channel_id: str) -> Callable[[asyncio.Task[None]], None]:
        def forget(_task: asyncio.Task[None]) -> None:
            self._workers.pop(channel_id, None)

        return forget

    async def _work(self, channel_id: str, ids: list[int]) -> None:
        try:
            async with self._sessionmaker() as db:
                channel = await db.get(Channel, channel_id)
            if channel is None:
                return  # deleted: its deliveries went with it
            config = decrypt_config(self._settings, channel.config_encrypted)
            for delivery_id in ids:
                await self._attempt(channel, config, delivery_id)
        except Exception:
            log.exception("channel %s: delivery worker failed", channel_id)

    async def _attempt(self, channel: Channel, config: dict[str, str], delivery_id: int) -> None:
        async with self._sessionmaker() as db:
            delivery = await db.get(ChannelDelivery, delivery_id)
            event = await db.get(Event, delivery.event_id) if delivery is not None else None
        if delivery is None or delivery.status != "pending":
            return
        if event is None:
            result = Result(False, False, None, "event no longer exists", 0)
        else:
            try:
                request = build(channel.provider, config, event.payload, f"wrenn-{delivery.id}", self._settings)
            except Exception as exc:  # a config this version cannot use: recorded, not retried
                result = Result(False, False, None, f"cannot build the request: {exc!r}"[:1000], 0)
            else:
                result = await send(self._client, request, self._settings.channel_timeout_seconds,
                                    allow_private=self._settings.channel_allow_private_destinations)
        attempt = delivery.attempts + 1
        now = utcnow()
        values: dict[str, object] = {"attempts": attempt, "lease_owner": None, "lease_until": None}
        if result.ok:
            values["status"] = "delivered"
        elif result.retry and attempt < self._settings.channel_max_attempts:
            values["next_attempt_at"] = now + timedelta(seconds=backoff(self._settings, attempt, result.retry_after))
        else:
            values["status"] = "failed"
            log.warning("channel %s: delivery %s failed for good: %s", channel.id, delivery.id, result.error)
        async with self._sessionmaker() as db:
            db.add(ChannelDeliveryAttempt(delivery_id=delivery.id, attempt=attempt, ok=result.ok,
                                          status_code=result.status_code, error=result.error,
                                          duration_ms=result.duration_ms, created_at=now))
            await db.execute(update(ChannelDelivery).where(ChannelDelivery.id == delivery.id).values(**values)
                             .execution_options(synchronize_session=False))
            await db.commit()

    async def aclose(self) -> None:
        if self._workers:
            await stop(list(self._workers.values()))


@contextlib.asynccontextmanager
async def dispatcher_service(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    client = httpx.AsyncClient(follow_redirects=False)
    dispatcher = Dispatcher(app.state.sessionmaker, settings, client)
    bus: Bus = app.state.bus
    tasks = follow_events(bus, settings.events_poll_seconds, dispatcher.dispatch_once, "dispatcher", "dispatcher pass")
    try:
        yield
    finally:
        await stop(tasks)
        await dispatcher.aclose()
        await client.aclose()
