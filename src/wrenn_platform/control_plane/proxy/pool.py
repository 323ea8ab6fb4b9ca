"""Idle connections to capsule ports, kept for the next request to the same port (keep-alive
toward the capsule). Keyed by (capsule id, port); a connection the capsule closed is dropped at
checkout; `sweep()` closes what sat idle longer than `idle_seconds`."""

from __future__ import annotations

import time
from collections import deque

from wrenn_platform.agent_link.port_link import Upstream

Key = tuple[str, int]


class UpstreamPool:
    def __init__(self, max_idle_per_port: int = 64, idle_seconds: float = 30.0) -> None:
        self.max_idle_per_port = max_idle_per_port
        self.idle_seconds = idle_seconds
        self._idle: dict[Key, deque[tuple[Upstream, float]]] = {}

    def checkout(self, key: Key) -> Upstream | None:
        idle = self._idle.get(key)
        while idle:
            upstream, _ = idle.pop()
            if not upstream.is_closing():
                return upstream
            upstream.close()
        return None

    def checkin(self, key: Key, upstream: Upstream) -> None:
        idle = self._idle.setdefault(key, deque())
        if len(idle) >= self.max_idle_per_port or upstream.is_closing():
            upstream.close()
            return
        idle.append((upstream, time.monotonic()))

    def sweep(self) -> None:
        cutoff = time.monotonic() - self.idle_seconds
        for key in list(self._idle):
            idle = self._idle[key]
            while idle and (idle[0][1] < cutoff or idle[0][0].is_closing()):
                idle.popleft()[0].close()
            if not idle:
                del self._idle[key]

    def drop(self, capsule_id: str) -> None:
        for key in [k for k in self._idle if k[0] == capsule_id]:
            for upstream, _ in self._idle.pop(key):
                upstream.close()

    def close(self) -> None:
        for idle in self._idle.values():
            for upstream, _ in idle:
                upstream.close()
        self._idle.clear()
