"""Publish/subscribe between the parts of the control plane, and across replicas when Redis is set.

`publish(topic, payload)` delivers a JSON-able dict to every current subscriber of `topic`;
`subscribe(topic)` is an async context manager yielding an async iterator of payloads. Delivery is
at-most-once and only to subscribers present at publish time. The service puts the bus on
`app.state.bus` and the Redis client (or None) on `app.state.redis`.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

from fastapi import FastAPI
from redis.asyncio import Redis

Payload = dict[str, Any]


class Bus(Protocol):
    async def publish(self, topic: str, payload: Payload) -> None: ...

    def subscribe(self, topic: str) -> AbstractAsyncContextManager[AsyncIterator[Payload]]: ...


class InProcessBus:
    def __init__(self) -> None:
        self._queues: defaultdict[str, set[asyncio.Queue[Payload]]] = defaultdict(set)

    async def publish(self, topic: str, payload: Payload) -> None:
        for queue in list(self._queues.get(topic, ())):
            queue.put_nowait(payload)

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[AsyncIterator[Payload]]:
        queue: asyncio.Queue[Payload] = asyncio.Queue()
        self._queues[topic].add(queue)

        async def messages() -> AsyncIterator[Payload]:
            while True:
                yield await queue.get()

        try:
            yield messages()
        finally:
            self._queues[topic].discard(queue)
            if not self._queues[topic]:
                del self._queues[topic]


class RedisBus:
    """Redis pub/sub; each subscription has its own connection so a slow reader blocks no one else."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _channel(self, topic: str) -> str:
        return f"{self._prefix}bus:{topic}"

    async def publish(self, topic: str, payload: Payload) -> None:
        await self._redis.publish(self._channel(topic), json.dumps(payload))

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[AsyncIterator[Payload]]:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel(topic))

        async def messages() -> AsyncIterator[Payload]:
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    yield json.loads(message["data"])

        try:
            yield messages()
        finally:
            await pubsub.unsubscribe()
            await pubsub.aclose()


@asynccontextmanager
async def bus_service(app: FastAPI) -> AsyncIterator[None]:
    settings = app.state.settings
    if not settings.redis_url:
        app.state.redis = None
        app.state.bus = InProcessBus()
        yield
        return
    redis: Redis = Redis.from_url(settings.redis_url, decode_responses=True)
    await redis.ping()  # fail at start-up, not on the first request
    app.state.redis = redis
    app.state.bus = RedisBus(redis, settings.redis_prefix)
    try:
        yield
    finally:
        await redis.aclose()
