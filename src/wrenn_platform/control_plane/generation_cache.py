"""An in-memory cache whose entries die with its generation: the rule of the replica-local caches.

An entry is stored with the generation read *before* the database was consulted and is served
only while the generation is unchanged and its time to live has not run out; `invalidate` (called
after a commit that changed what is cached, see `db/commit_watch.py`) bumps the generation, so a
lookup that raced a change never stores a stale entry.
"""

from __future__ import annotations

import time
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class GenerationCache(Generic[K, V]):
    def __init__(self, ttl_seconds: float, max_entries: int) -> None:
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self.generation = 0
        self._entries: dict[K, tuple[V, int, float]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, generation, expires = entry
        if generation != self.generation or expires <= time.monotonic():
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V, generation: int) -> None:
        """Store a value read after `generation` was taken, unless a change committed since."""
        if generation != self.generation or self._ttl <= 0:
            return
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[key] = (value, generation, time.monotonic() + self._ttl)

    def invalidate(self) -> None:
        self.generation += 1
        self._entries.clear()
