"""Fixed-window counters: in Redis when configured (so replicas share them), in memory otherwise."""

from __future__ import annotations

import math
import time

from redis.asyncio import Redis


class RateLimiter:
    """At most `limit` hits per key per `window` seconds; `retry_after` says how long to wait."""

    def __init__(self, limit: int, window: int, redis: Redis | None = None, prefix: str = "") -> None:
        self.limit = limit
        self.window = window
        self._redis = redis
        self._prefix = prefix
        self._memory: dict[str, tuple[int, float]] = {}  # key -> (count, monotonic end of window)

    def _key(self, key: str) -> str:
        return f"{self._prefix}ratelimit:{key}"

    async def retry_after(self, key: str) -> int | None:
        """Seconds until `key` may be tried again, or None if it is under the limit."""
        if self._redis is not None:
            pipe = self._redis.pipeline()
            pipe.get(self._key(key))
            pipe.pttl(self._key(key))
            count, pttl = await pipe.execute()
            if count is None or int(count) < self.limit:
                return None
            return max(1, math.ceil(int(pttl) / 1000)) if int(pttl) > 0 else 1
        entry = self._memory.get(key)
        now = time.monotonic()
        if entry is None or entry[1] <= now or entry[0] < self.limit:
            return None
        return max(1, math.ceil(entry[1] - now))

    async def hit(self, key: str) -> int:
        """Count one hit; returns the hits of `key` in the current window, this one included."""
        if self._redis is not None:
            pipe = self._redis.pipeline()
            pipe.incr(self._key(key))
            pipe.expire(self._key(key), self.window, nx=True)
            count, _ = await pipe.execute()
            return int(count)
        now = time.monotonic()
        count, end = self._memory.get(key, (0, 0.0))
        if end <= now:
            count, end = 0, now + self.window
            self._drop_expired(now)
        self._memory[key] = (count + 1, end)
        return count + 1

    async def reset(self, key: str) -> None:
        if self._redis is not None:
            await self._redis.delete(self._key(key))
        else:
            self._memory.pop(key, None)

    def _drop_expired(self, now: float) -> None:
        if len(self._memory) > 10_000:
            for stale in [k for k, (_, end) in self._memory.items() if end <= now]:
                del self._memory[stale]
