"""What a host agent does on its own, every tick, for every capsule it holds:

- the sampler (`sample_interval_s`): CPU, memory and disk into the metrics store; network traffic
  through the capsule's slot counts as activity; a capsule that cannot be sampled
  `sample_failures_before_error` times in a row becomes `error` (`sandbox.error`);
- the crash watcher (each reaper tick): a capsule whose runtime says it is no longer `alive` is
  cleaned up and reported (`sandbox.stopped`);
- the TTL reaper (`reaper_interval_s`): a running capsule idle past its timeout is paused
  (`sandbox.auto_paused`).

It works on the `HostAgent`'s capsules under the same per-capsule locks as the agent's own
operations, and skips a capsule whose lock is held (an operation is under way).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from wrenn_platform.wire.agent import AgentError

from .registry import CapsuleRecord

if TYPE_CHECKING:
    from .service import HostAgent

log = logging.getLogger(__name__)


class CapsuleMonitor:
    def __init__(self, agent: HostAgent) -> None:
        self.agent = agent
        self._traffic: dict[str, int] = {}  # capsule → rx + tx bytes at the last sample
        self._sample_failures: dict[str, int] = {}  # capsule → failed samples in a row
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        settings = self.agent.settings
        self._tasks = [
            asyncio.create_task(_every(settings.sample_interval_s, self.sample_tick), name="sampler"),
            asyncio.create_task(_every(settings.reaper_interval_s, self.reap_tick), name="reaper"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def forget(self, capsule_id: str) -> None:
        self._traffic.pop(capsule_id, None)
        self._sample_failures.pop(capsule_id, None)

    async def sample_tick(self) -> None:
        agent = self.agent
        wall, mono = time.time(), time.monotonic()
        running = [rec for rec in agent._capsules.values() if rec.status == "running"]
        failures = agent.metrics.sample_all([r.id for r in running], agent.runtime.sample, wall, mono)
        for rec in running:
            self._observe_traffic(rec)
            if rec.id in failures:
                n = self._sample_failures.get(rec.id, 0) + 1
                self._sample_failures[rec.id] = n
                if n == agent.settings.sample_failures_before_error:
                    rec.status = "error"
                    agent.records.save(rec)
                    agent.events.publish("sandbox.error", rec.id, f"cannot sample capsule: {failures[rec.id]}")
            else:
                self._sample_failures.pop(rec.id, None)

    def _observe_traffic(self, rec: CapsuleRecord) -> None:
        """Network traffic through the slot counts as activity (e.g. a web server being used)."""
        iface = (rec.slot or {}).get("host_iface")
        if not iface:
            return
        total = 0
        try:
            for name in ("rx_bytes", "tx_bytes"):
                total += int(Path(f"/sys/class/net/{iface}/statistics/{name}").read_text())
        except (OSError, ValueError):
            return
        if self._traffic.get(rec.id) not in (None, total):
            rec.touch()
        self._traffic[rec.id] = total

    async def watch_tick(self) -> None:
        """Capsules that died on their own (crash, OOM of their init, killed from outside) are
        cleaned up and reported."""
        agent = self.agent
        for rec in list(agent._capsules.values()):
            if rec.status not in ("running", "paused") or agent._lock(rec.id).locked():
                continue
            try:
                if agent.runtime.alive(rec.id):
                    continue
            except Exception:
                log.exception("liveness check of %s failed", rec.id)
                continue
            async with agent._lock(rec.id):
                if agent._capsules.get(rec.id) is not rec or rec.status not in ("running", "paused"):
                    continue
                await agent._discard(rec, rec.network_slot(), destroy=True)
            if rec.id not in agent._capsules:
                agent.events.publish("sandbox.stopped", rec.id, "the capsule stopped on its own (crash or kill)")

    async def reap_tick(self) -> None:
        await self.watch_tick()
        agent = self.agent
        now = time.monotonic()
        for rec in list(agent._capsules.values()):
            if rec.status != "running" or rec.timeout_sec <= 0 or rec.busy:
                continue
            if now - rec.last_active_mono < rec.timeout_sec:
                continue
            lock = agent._lock(rec.id)
            if lock.locked():
                continue
            async with lock:
                if rec.status != "running" or rec.busy or time.monotonic() - rec.last_active_mono < rec.timeout_sec:
                    continue
                try:
                    await agent._pause_locked(rec)
                except AgentError as exc:
                    agent.events.publish("sandbox.error", rec.id, f"auto-pause failed: {exc.message}")
                    continue
            agent.events.publish("sandbox.auto_paused", rec.id, f"inactive for {rec.timeout_sec} s")


async def _every(interval: float, tick: Callable[[], Awaitable[None]]) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await tick()
        except Exception:
            log.exception("periodic task failed")
