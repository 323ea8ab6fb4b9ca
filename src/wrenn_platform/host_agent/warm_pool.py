"""The warm pool: capsules of this host started before anyone asks for them, owned by no team.

For every pool key (template, vCPUs, memory, disk) the pool keeps `size` capsules fully started
— runtime up, network slot, limits, envd answering — under a low CPU weight. A create request
that matches a key *claims* one (`claim`): envd's `/init` gets the tenant's environment variables
and default user and replaces the pool's access token with a fresh one, the agent takes the
capsule over as a regular one (TTL and activity start then), and the pool refills in the
background. A claimed capsule never comes back: a pooled capsule has never run anything for
anyone, so nothing of one tenant can reach another through it.

Refilling starts one capsule at a time, `refill_gap_s` apart, each in a gap of `quiet_s` without a
tenant operation on the host (deferred at most `max_defer_s`), and not at all while the host's
load average per core is above `max_load`, so foreground work is slowed by it as little as can be.

Pooled capsules are written to `<data_dir>/agent/pool/` (same records as the agent's own). On
`close` they are destroyed; after a crash the next agent re-adopts those still `ready` whose key
is still configured with room for them and whose template has not been rebuilt, and destroys
the rest. A capsule caught mid-claim by a crash is never put back: it is destroyed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from wrenn_platform.host_agent.envd_client import EnvdClient
from wrenn_platform.host_agent.registry import CapsuleRecord, RecordStore, utcnow
from wrenn_platform.host_agent.runtime.base import DEFAULT_USER, CapsuleSpec, NetworkSlot
from wrenn_platform.host_agent.templates import TemplateError, TemplateInfo
from wrenn_platform.wire.agent import CreateCapsuleRequest
from wrenn_platform.wire.warm_pool import PoolKey, WarmPoolInfo

if TYPE_CHECKING:
    from .service import HostAgent

log = logging.getLogger(__name__)

POOL_CPU_WEIGHT = 10  # against 100 for every running capsule: a pooled start yields to real work
CLAIMED_CPU_WEIGHT = 100
READY, STARTING, CLAIMING = "ready", "starting", "claiming"
POOLED_RUNTIMES = ("namespace",)


@dataclasses.dataclass
class PoolSettings:
    sizes: dict[PoolKey, int] = dataclasses.field(default_factory=dict)
    refill_gap_s: float = 0.05  # pause between two refill starts
    max_load: float = 4.0  # 1-minute load average per core above which refilling waits
    retry_after_failure_s: float = 5.0  # first wait after a failed refill start (doubles, ≤ 60 s)
    check_interval_s: float = 5.0  # how often an idle refill loop looks for rebuilt templates
    quiet_s: float = 0.25  # a refill start waits for this long without a tenant operation on the host ...
    max_defer_s: float = 5.0  # ... but not longer: under steady load the pool still refills, slowly


class WarmPool:
    def __init__(self, agent: HostAgent, settings: PoolSettings) -> None:
        self.agent = agent
        self.settings = settings
        self.sizes = {key: n for key, n in settings.sizes.items() if n > 0}
        self.store = RecordStore(agent.settings.data_dir / "agent" / "pool")
        self._ready: dict[PoolKey, list[CapsuleRecord]] = {key: [] for key in self.sizes}
        self._starting: Counter[PoolKey] = Counter()
        self._claimed: Counter[PoolKey] = Counter()
        self._missed: Counter[PoolKey] = Counter()
        self._errors: dict[PoolKey, str] = {}  # keys whose last refill failed, why (skipped until the next check)
        self._reported: dict[PoolKey, str] = {}  # the failure last logged per key
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ---- what it holds ----------------------------------------------------------------------

    def info(self) -> list[WarmPoolInfo]:
        return [
            WarmPoolInfo(template=key.template, vcpus=key.vcpus, memory_mb=key.memory_mb,
                         disk_size_mb=key.disk_size_mb, size=size, ready=len(self._ready.get(key, [])),
                         starting=self._starting[key], claimed_total=self._claimed[key],
                         missed_total=self._missed[key], last_error=self._reported.get(key, ""))
            for key, size in sorted(self.sizes.items())
        ]

    def slot_indexes(self) -> set[int]:
        return {rec.slot["index"] for recs in self._ready.values() for rec in recs if rec.slot}

    def capsule_ids(self) -> set[str]:
        return {rec.id for recs in self._ready.values() for rec in recs}

    # ---- process life -------------------------------------------------------------------------

    async def readopt(self) -> None:
        """Take back the pooled capsules a crashed agent left (see the module docstring)."""
        records, broken = self.store.load_all()
        for path, exc in broken:
            log.error("warm pool: unreadable record %s (%s); removed", path, exc)
            path.unlink(missing_ok=True)
        for rec in records:
            if rec.id in self.agent.capsule_ids():  # claimed just before the crash: the agent's now
                self.store.delete(rec.id)
                continue
            key = _key(rec)
            reason = self._unusable(rec, key)
            if reason is None and rec.state_dir:
                try:
                    running = await self.agent.runtime.adopt(Path(rec.state_dir))
                except Exception as exc:
                    running, reason = None, f"re-adoption failed: {exc}"
                if running is not None:
                    rec.attach(running)
                    self._ready[key].append(rec)
                    log.info("warm pool: re-adopted %s (%s)", rec.id, key)
                    continue
                reason = reason or "the runtime could not re-adopt it"
            log.info("warm pool: removing %s left by the previous agent: %s", rec.id, reason or "no state")
            await self._discard(rec)

    def _unusable(self, rec: CapsuleRecord, key: PoolKey) -> str | None:
        if rec.status != READY:
            return f"it was {rec.status} when the agent stopped"
        if key not in self.sizes:
            return f"pool {key} is no longer configured"
        if len(self._ready[key]) >= self.sizes[key]:
            return f"pool {key} is full"
        if not self._template_current(rec):
            return "its template was rebuilt"
        return None

    def start(self) -> None:
        if self.sizes and self.agent.runtime.name not in POOLED_RUNTIMES:
            # A microvm pool would hold booted VMs (~240 MiB each); clones kept stopped are not built yet.
            for key in self.sizes:
                self._fail(key, f"the {self.agent.runtime.name} runtime has no warm pool yet")
                self.sizes[key] = 0
            return
        if self.sizes:
            self._task = asyncio.create_task(self._refill_loop(), name="warm-pool-refill")

    async def close(self) -> None:
        """Stop refilling and destroy every pooled capsule (claimed ones are the agent's)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for key in list(self._ready):
            await self.drain(key, stop=False)

    async def drain(self, key: PoolKey, stop: bool = True) -> int:
        """Destroy the pool's ready capsules of `key`; with `stop`, it is not refilled (size 0)
        until `resize`. The number destroyed."""
        if stop and key in self.sizes:
            self.sizes[key] = 0
        drained = self._ready.get(key, [])
        self._ready[key] = []
        for rec in drained:
            await self._discard(rec)
        if drained:
            log.info("warm pool %s: drained %d capsule(s)", key, len(drained))
        return len(drained)

    def resize(self, key: PoolKey, size: int) -> None:
        self.sizes[key] = size
        self._ready.setdefault(key, [])
        self._wake.set()

    # ---- claiming -----------------------------------------------------------------------------

    async def claim(self, req: CreateCapsuleRequest, template: TemplateInfo) -> CapsuleRecord | None:
        """A ready capsule of the request's key, handed over to the tenant; None when there is none
        (the caller takes the cold path). `template` is what the request resolves to now."""
        key = PoolKey(req.template, req.vcpus, req.memory_mb, req.disk_size_mb)
        ready = self._ready.get(key)
        if ready is None:
            return None
        while ready:
            rec = ready.pop(0)  # the oldest first: the pool turns over
            self._wake.set()
            if rec.template_dir != str(template.path) or not self._alive(rec):
                log.info("warm pool: %s is stale or gone; destroyed instead of claimed", rec.id)
                await self._discard(rec)
                continue
            rec.status = CLAIMING
            self.store.save(rec)  # a crash from here on destroys it rather than pooling it again
            token = secrets.token_urlsafe(24)
            try:
                await self._hand_over(rec, req, template, token)
            except Exception as exc:
                log.warning("warm pool: claim of %s failed (%s); destroyed, trying the next", rec.id, exc)
                await self._discard(rec)
                continue
            rec.team_id = req.team_id
            rec.envd_access_token = token
            rec.env_vars = dict(req.env_vars)
            rec.labels = dict(req.metadata)
            rec.timeout_sec = self.agent.settings.clamp_timeout(req.timeout_sec)
            rec.created_at = rec.started_at = utcnow().isoformat()
            rec.status = "running"
            self._claimed[key] += 1
            return rec
        self._missed[key] += 1
        return None

    def release_claimed(self, capsule_id: str) -> None:
        """The agent has saved the claimed capsule as its own: the pool's record goes."""
        self.store.delete(capsule_id)

    async def _hand_over(self, rec: CapsuleRecord, req: CreateCapsuleRequest, template: TemplateInfo,
                         token: str) -> None:
        assert rec.envd_url is not None
        # The full share first: at the pool's weight, envd answering /init waits behind every busy capsule.
        self.agent.runtime.set_cpu_weight(rec.id, CLAIMED_CPU_WEIGHT)
        envd = EnvdClient(rec.envd_url, rec.envd_access_token, timeout=5.0)
        try:
            await envd.init(access_token=token, env_vars=req.env_vars,
                            default_user=template.default_user or DEFAULT_USER)
        finally:
            await envd.aclose()

    def _alive(self, rec: CapsuleRecord) -> bool:
        try:
            return self.agent.runtime.alive(rec.id)
        except Exception:
            log.exception("warm pool: liveness check of %s failed", rec.id)
            return False

    # ---- refilling ----------------------------------------------------------------------------

    def _short(self) -> PoolKey | None:
        """The key furthest below its size (None: every pool is full)."""
        best, gap = None, 0
        for key, size in self.sizes.items():
            missing = size - len(self._ready.get(key, [])) - self._starting[key]
            if missing > gap and key not in self._errors:
                best, gap = key, missing
        return best

    def _loaded(self) -> bool:
        return os.getloadavg()[0] / (os.cpu_count() or 1) > self.settings.max_load

    async def _refill_loop(self) -> None:
        while True:
            try:
                await self._drop_stale()
                key = self._short()
                if key is None:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.settings.check_interval_s)
                    self._errors.clear()  # a failed key is tried again after the check interval
                    continue
                if self._loaded():
                    await asyncio.sleep(1.0)
                    continue
                await self._wait_for_a_gap()
                await self._start_one(key)
                await asyncio.sleep(self.settings.refill_gap_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("warm pool refill failed")
                await asyncio.sleep(self.settings.retry_after_failure_s)

    async def _wait_for_a_gap(self) -> None:
        """Until no tenant operation (create, exec, files...) came in for `quiet_s`, at most `max_defer_s`."""
        deadline = time.monotonic() + self.settings.max_defer_s
        while (quiet := time.monotonic() - self.agent.last_foreground) < self.settings.quiet_s:
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(self.settings.quiet_s - quiet)

    async def _drop_stale(self) -> None:
        """Capsules of a rebuilt template, or that died while waiting, are destroyed (and refilled)."""
        for key, ready in self._ready.items():
            for rec in list(ready):
                if not self._template_current(rec) or not self._alive(rec):
                    ready.remove(rec)
                    log.info("warm pool %s: %s is stale or gone; destroyed", key, rec.id)
                    await self._discard(rec)
            excess = len(ready) - self.sizes.get(key, 0)
            for rec in [ready.pop() for _ in range(max(0, excess))]:
                await self._discard(rec)

    def _template_current(self, rec: CapsuleRecord) -> bool:
        try:
            return str(self.agent.templates.resolve(rec.template, None).path) == rec.template_dir
        except TemplateError:
            return False

    async def _start_one(self, key: PoolKey) -> None:
        agent = self.agent
        try:
            template = agent.templates.resolve(key.template, None)
        except TemplateError as exc:
            self._fail(key, f"cannot refill: {exc}")
            return
        if template.start is not None:
            # Its service would start before the capsule has an owner; such templates are created cold.
            self._fail(key, f"template {key.template!r} runs a start command: not pooled")
            return
        rec = CapsuleRecord(
            id=f"cl-{secrets.token_hex(6)}", team_id=None, runtime=agent.runtime.name, template=key.template,
            template_dir=str(template.path), vcpus=key.vcpus, memory_mb=key.memory_mb,
            disk_size_mb=key.disk_size_mb, timeout_sec=0, envd_access_token=secrets.token_urlsafe(24),
            status=STARTING,
        )
        spec = CapsuleSpec(
            capsule_id=rec.id, template=key.template, template_dir=template.path, vcpus=key.vcpus,
            memory_mb=key.memory_mb, disk_size_mb=key.disk_size_mb, envd_access_token=rec.envd_access_token,
            default_user=template.default_user or DEFAULT_USER, cpu_weight=POOL_CPU_WEIGHT,
        )
        self._starting[key] += 1
        slot: NetworkSlot | None = None
        try:
            slot = await agent.slots.allocate(rec.id)
            rec.slot = dataclasses.asdict(slot)
            self.store.save(rec)
            running = await agent.runtime.create(spec, slot)
        except BaseException as exc:
            await self._discard(rec, destroy=slot is not None)
            if isinstance(exc, Exception):
                self._fail(key, f"starting a pooled capsule failed: {exc}")
                return
            raise
        finally:
            self._starting[key] -= 1
        rec.attach(running)
        rec.status = READY
        rec.started_at = utcnow().isoformat()
        self.store.save(rec)
        self._errors.pop(key, None)
        self._reported.pop(key, None)
        if key in self.sizes and len(self._ready[key]) < self.sizes[key]:
            self._ready[key].append(rec)
        else:  # drained or resized while it started
            await self._discard(rec)

    def _fail(self, key: PoolKey, message: str) -> None:
        """A refill of `key` failed: shown in `info`, logged once per distinct reason (retried every
        `check_interval_s`)."""
        self._errors[key] = message
        if self._reported.get(key) != message:
            self._reported[key] = message
            log.warning("warm pool %s: %s", key, message)

    async def _discard(self, rec: CapsuleRecord, destroy: bool = True) -> None:
        """Destroy a pooled capsule and release its slot; never raises. A capsule the runtime
        cannot destroy keeps its record (status `error`) for the next agent start to retry."""
        if destroy:
            try:
                await self.agent.runtime.destroy(rec.id)
            except Exception:
                log.exception("warm pool: destroying %s failed; its record is kept", rec.id)
                rec.status = "error"
                self.store.save(rec)
                return
        slot = rec.network_slot()
        if slot is not None:
            try:
                await self.agent.slots.release(slot)
            except Exception:
                log.exception("warm pool: releasing slot %s of %s failed", slot.index, rec.id)
        self.store.delete(rec.id)


def _key(rec: CapsuleRecord) -> PoolKey:
    return PoolKey(rec.template, rec.vcpus, rec.memory_mb, rec.disk_size_mb)
