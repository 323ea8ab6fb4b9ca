"""`HostAgent`: the in-process core of the host agent — every capsule on this host, its life cycle,
its activity clock and metrics, and the guest operations forwarded to envd. What it does on its own
(sampling, crash watching, auto-pause) is `monitor.py`.

The HTTP API (`api.py`) and the in-process client (`local_client.py`) are thin layers over this class.
Lifecycle operations on one capsule are serialised by a per-capsule lock; guest operations
(exec, files, streams) run concurrently and only need the capsule to be running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast

import wrenn_platform
from wrenn_platform.host_agent import guest as guest_ops
from wrenn_platform.host_agent.events import EventBus
from wrenn_platform.host_agent.metrics import RANGES, MetricsStore
from wrenn_platform.host_agent.monitor import CapsuleMonitor
from wrenn_platform.host_agent.registry import CapsuleRecord, RecordStore, utcnow
from wrenn_platform.host_agent.runtime.base import (
    DEFAULT_USER,
    CapsuleSpec,
    NetworkSlot,
    RunningCapsule,
    Runtime,
)
from wrenn_platform.host_agent.startup import NotReady, start_service
from wrenn_platform.host_agent.templates import (
    TemplateError,
    TemplateExists,
    TemplateInfo,
    TemplateInUse,
    TemplateNotFound,
    TemplateStore,
    read_info,
)
from wrenn_platform.host_agent.warm_pool import PoolSettings, WarmPool
from wrenn_platform.wire.agent import (
    AgentError,
    AgentInfo,
    AlreadyExists,
    BackgroundExecResponse,
    BadRequest,
    CapsuleInfo,
    CapsuleMetrics,
    Conflict,
    CreateCapsuleRequest,
    ExecRequest,
    ExecResponse,
    GuestOp,
    MetricPoint,
    NotFound,
    PtyConnect,
    PtyStart,
    Req,
    Resp,
    SnapshotRequest,
    StreamStart,
    TemplateOut,
)
from wrenn_platform.wire.capsule_id import CAPSULE_ID_RULE, is_capsule_id

log = logging.getLogger(__name__)

AGENT_VERSION = wrenn_platform.__version__


class SlotPool(Protocol):
    """What the agent needs from the network module."""

    async def allocate(self, holder: str) -> NetworkSlot: ...

    async def release(self, slot: NetworkSlot) -> None: ...

    async def reclaim(self, keep: set[int]) -> list[int]:
        """Release this agent's slots other than `keep` (after a restart); the indexes released."""
        ...

    async def aclose(self) -> None: ...


@dataclass
class AgentSettings:
    host_id: str
    data_dir: Path
    min_timeout_sec: int = 60  # positive timeouts below this are clamped up (contract: 60)
    sample_interval_s: float = 0.5
    reaper_interval_s: float = 1.0
    sample_failures_before_error: int = 6
    # runtime.create calls at once (both runtimes are safe to call concurrently; this bounds the
    # CPU a burst of creates takes from running capsules on a small host).
    create_concurrency: int = 4
    warm_pool: PoolSettings = field(default_factory=PoolSettings)

    def clamp_timeout(self, timeout_sec: int) -> int:
        return 0 if timeout_sec <= 0 else max(timeout_sec, self.min_timeout_sec)


class HostAgent:
    def __init__(self, settings: AgentSettings, runtime: Runtime, slots: SlotPool, templates: TemplateStore):
        self.settings = settings
        self.runtime = runtime
        self.slots = slots
        self.templates = templates
        self.events = EventBus(settings.host_id)
        self.metrics = MetricsStore()
        self.records = RecordStore(settings.data_dir / "agent" / "capsules")
        self._capsules: dict[str, CapsuleRecord] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._guests: dict[str, guest_ops.Guest] = {}
        self.monitor = CapsuleMonitor(self)
        self._creating = asyncio.Semaphore(settings.create_concurrency)
        self.pool = WarmPool(self, settings.warm_pool)
        self.last_foreground = 0.0  # monotonic time of the last tenant operation (the pool refills in the gaps)

    # ---- process life ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Re-adopt what a previous agent process left, then start the monitor (sampler, crash
        watcher, TTL reaper)."""
        await self.readopt()
        self.pool.start()
        self.monitor.start()

    async def close(self) -> None:
        """Stop background work and envd connections, destroy the warm pool. Capsules keep
        running (re-adopted on restart)."""
        await self.pool.close()
        await self.monitor.stop()
        for g in list(self._guests.values()):
            await g.aclose()
        self._guests.clear()
        await self.slots.aclose()

    def info(self) -> AgentInfo:
        note = "" if self.runtime.name == "microvm" else (
            "namespace runtime: capsules share the host kernel (weaker isolation than a VM)")
        return AgentInfo(host_id=self.settings.host_id, runtime=self.runtime.name, version=AGENT_VERSION,
                         capsules=len(self._capsules), isolation_note=note, warm_pools=self.pool.info())

    # ---- lookups --------------------------------------------------------------------------------

    def _get(self, capsule_id: str) -> CapsuleRecord:
        rec = self._capsules.get(capsule_id)
        if rec is None:
            raise NotFound(f"capsule {capsule_id} not found")
        return rec

    def _running(self, capsule_id: str) -> CapsuleRecord:
        rec = self._get(capsule_id)
        if rec.status != "running":
            raise Conflict(f"capsule {capsule_id} is {rec.status}, not running")
        return rec

    def _lock(self, capsule_id: str) -> asyncio.Lock:
        return self._locks.setdefault(capsule_id, asyncio.Lock())

    def capsule_ids(self) -> set[str]:
        return set(self._capsules)

    def list_capsules(self) -> list[CapsuleInfo]:
        return [rec.info() for rec in self._capsules.values()]

    def get(self, capsule_id: str) -> CapsuleInfo:
        return self._get(capsule_id).info()

    def ping(self, capsule_id: str) -> None:
        self._running(capsule_id).touch()

    # ---- life cycle -----------------------------------------------------------------------------

    async def create(self, req: CreateCapsuleRequest) -> CapsuleInfo:
        self.last_foreground = time.monotonic()
        capsule_id = req.capsule_id or f"cl-{secrets.token_hex(8)}"
        if capsule_id in self._capsules:
            raise AlreadyExists(f"capsule {capsule_id} already exists")
        if not is_capsule_id(capsule_id):
            raise BadRequest(f"invalid capsule id {capsule_id!r}: {CAPSULE_ID_RULE}")
        try:
            template = self.templates.resolve(req.template, req.team_id)
        except TemplateNotFound as exc:
            raise NotFound(str(exc)) from exc
        except TemplateError as exc:
            raise BadRequest(str(exc)) from exc
        if template.runtime is not None and template.runtime != self.runtime.name:
            raise BadRequest(f"template {req.template!r} is a {template.runtime} snapshot; "
                             f"this host runs {self.runtime.name}")
        rec = CapsuleRecord(
            id=capsule_id, team_id=req.team_id, runtime=self.runtime.name, template=req.template,
            template_dir=str(template.path), vcpus=req.vcpus, memory_mb=req.memory_mb,
            disk_size_mb=req.disk_size_mb, timeout_sec=self.settings.clamp_timeout(req.timeout_sec),
            envd_access_token=req.envd_access_token or secrets.token_urlsafe(24), env_vars=dict(req.env_vars),
            labels=dict(req.metadata),
        )
        spec = CapsuleSpec(
            capsule_id=capsule_id, template=req.template, template_dir=template.path, vcpus=req.vcpus,
            memory_mb=req.memory_mb, disk_size_mb=req.disk_size_mb,
            envd_access_token=rec.envd_access_token, env_vars=dict(req.env_vars),
            default_user=req.default_user or template.default_user or DEFAULT_USER,
        )
        self._capsules[capsule_id] = rec
        async with self._lock(capsule_id):
            slot: NetworkSlot | None = None
            try:
                slot = await self.slots.allocate(capsule_id)
                rec.slot = dataclasses.asdict(slot)
                self.records.save(rec)  # before anything exists, so a crash from here on is cleaned up
                async with self._creating:
                    running = await self.runtime.create(spec, slot)
            except BaseException as exc:
                await self._discard(rec, slot, destroy=True)
                if isinstance(exc, AgentError):
                    raise
                if isinstance(exc, Exception):
                    raise AgentError(f"create failed: {exc}") from exc
                raise
            rec.attach(running)
            if template.start is not None:
                await self._start_service(rec, template, slot)
            rec.status = "running"
            rec.started_at = utcnow().isoformat()
            rec.touch()
            self.records.save(rec)
            self.metrics.track(capsule_id, rec.vcpus)
        log.info("created %s (%s, slot %s)", capsule_id, self.runtime.name, slot.index)
        return rec.info()

    async def claim(self, req: CreateCapsuleRequest) -> CapsuleInfo | None:
        """A warm-pool capsule handed over for `req` (`warm_pool.py`), now a capsule of the agent
        like any other; None when the pool has none (the caller creates one cold)."""
        if req.capsule_id is not None:
            raise BadRequest("a claim names no capsule id: the pooled capsule keeps its own")
        try:
            template = self.templates.resolve(req.template, req.team_id)
        except TemplateError:
            return None  # the cold create reports it
        rec = await self.pool.claim(req, template)
        if rec is None:
            return None
        rec.touch()
        self._capsules[rec.id] = rec
        self.records.save(rec)
        self.pool.release_claimed(rec.id)
        self.metrics.track(rec.id, rec.vcpus)
        log.info("claimed %s from the warm pool (team %s)", rec.id, rec.team_id)
        return rec.info()

    async def _start_service(self, rec: CapsuleRecord, template: TemplateInfo, slot: NetworkSlot) -> None:
        """The template's start command and readiness check; a capsule that does not get ready is
        removed and its create fails with the check's output (the capsule's failure reason)."""
        assert template.start is not None
        try:
            await start_service(self._guest_of(rec), template.start, slot.host_ip,
                                run_command=not template.service_in_memory)
        except BaseException as exc:
            await self._discard(rec, slot, destroy=True)
            if isinstance(exc, NotReady):
                log.warning("capsule %s of template %s did not get ready: %s", rec.id, template.name, exc.message)
                raise AgentError(f"template {template.name!r}: {exc.message}") from exc
            if isinstance(exc, AgentError | asyncio.CancelledError):
                raise
            if isinstance(exc, Exception):
                raise AgentError(f"starting the template's service failed: {exc}") from exc
            raise

    async def _discard(self, rec: CapsuleRecord, slot: NetworkSlot | None, destroy: bool) -> None:
        """Forget a capsule and release everything it held; never raises. If the runtime cannot
        destroy it, it is kept (status `error`, slot held, reported) rather than leaked unseen."""
        if destroy:
            try:
                await self.runtime.destroy(rec.id)
            except Exception as exc:
                log.exception("runtime destroy of %s failed", rec.id)
                rec.status = "error"
                self._capsules[rec.id] = rec
                self.records.save(rec)
                self.events.publish("sandbox.error", rec.id, f"could not remove the capsule: {exc}")
                return
        if slot is not None:
            try:
                await self.slots.release(slot)
            except Exception:
                log.exception("releasing slot %s of %s failed", slot.index, rec.id)
        g = self._guests.pop(rec.id, None)
        if g is not None:
            await g.aclose()
        self.records.delete(rec.id)
        self.metrics.forget(rec.id)
        self._capsules.pop(rec.id, None)
        self._locks.pop(rec.id, None)
        self.monitor.forget(rec.id)

    async def destroy(self, capsule_id: str) -> None:
        rec = self._get(capsule_id)
        async with self._lock(capsule_id):
            if capsule_id not in self._capsules:
                return  # destroyed while we waited for the lock
            rec.status = "stopping"
            try:
                await self.runtime.destroy(capsule_id)
            except Exception as exc:
                rec.status = "error"
                self.records.save(rec)
                raise AgentError(f"destroy failed: {exc}") from exc
            await self._discard(rec, rec.network_slot(), destroy=False)
        log.info("destroyed %s", capsule_id)

    async def pause(self, capsule_id: str) -> CapsuleInfo:
        rec = self._get(capsule_id)
        async with self._lock(capsule_id):
            self._running(capsule_id)
            await self._pause_locked(rec)
        return rec.info()

    async def _pause_locked(self, rec: CapsuleRecord) -> None:
        rec.status = "pausing"
        try:
            await self.runtime.pause(rec.id)
        except Exception as exc:
            rec.status = "running"
            raise AgentError(f"pause failed: {exc}") from exc
        rec.status = "paused"
        self.records.save(rec)

    async def resume(self, capsule_id: str) -> CapsuleInfo:
        rec = self._get(capsule_id)
        async with self._lock(capsule_id):
            if rec.status != "paused":
                raise Conflict(f"capsule {capsule_id} is {rec.status}, not paused")
            rec.status = "resuming"
            try:
                running = await self.runtime.resume(capsule_id)
            except Exception as exc:
                rec.status = "paused"
                raise AgentError(f"resume failed: {exc}") from exc
            if running.envd_url != rec.envd_url:
                await self._drop_guest(capsule_id)
            rec.attach(running)
            rec.status = "running"
            rec.touch()
            self.records.save(rec)
            self.metrics.reset_rate(capsule_id)
        return rec.info()

    async def snapshot(self, capsule_id: str, req: SnapshotRequest) -> TemplateOut:
        rec = self._get(capsule_id)
        async with self._lock(capsule_id):
            self._running(capsule_id)
            if req.start is not None:
                await self._start_for_snapshot(rec, req)
            try:
                # The directory the capsule was created from: `resolve` would return the newest
                # build of its template, which moves whenever the template is rebuilt.
                parent = read_info(Path(rec.template_dir))
                with self.templates.snapshot_dir(
                    req.team_id, req.name, runtime=self.runtime.name, parent=parent,
                    vcpus=rec.vcpus, memory_mb=rec.memory_mb, start=req.start,
                ) as pending:
                    await self.runtime.snapshot(capsule_id, pending.path)
            except TemplateExists as exc:
                raise AlreadyExists(str(exc)) from exc
            except TemplateError as exc:
                raise BadRequest(str(exc)) from exc
            except AgentError:
                raise
            except Exception as exc:
                raise AgentError(f"snapshot failed: {exc}") from exc
            rec.touch()
        assert pending.committed is not None
        return _template_out(pending.committed)

    async def _start_for_snapshot(self, rec: CapsuleRecord, req: SnapshotRequest) -> None:
        """A snapshot that declares a service starts it first and waits until it is ready: a microvm
        snapshot then holds it running, and a failing one fails here rather than in every capsule."""
        assert req.start is not None
        slot = rec.network_slot()
        assert slot is not None
        try:
            await start_service(self._guest_of(rec), req.start, slot.host_ip)
        except NotReady as exc:
            log.warning("snapshot %s of %s: its service did not get ready: %s", req.name, rec.id, exc.message)
            raise AgentError(f"the template's start command did not get ready: {exc.message}") from exc

    def list_templates(self, team_id: str | None) -> list[TemplateOut]:
        return [_template_out(t) for t in self.templates.list(team_id)]

    def delete_template(self, team_id: str, name: str) -> None:
        try:
            path = str(self.templates.resolve(name, team_id).path)
            users = [rec.id for rec in self._capsules.values() if rec.template_dir == path]
            if users:
                raise Conflict(f"template {name!r} is in use by capsule {', '.join(sorted(users))}")
            self.templates.delete(team_id, name)
        except TemplateNotFound as exc:
            raise NotFound(str(exc)) from exc
        except TemplateInUse as exc:
            raise Conflict(str(exc)) from exc
        except TemplateError as exc:
            raise BadRequest(str(exc)) from exc

    # ---- re-adoption ----------------------------------------------------------------------------

    async def readopt(self) -> None:
        """Take back every capsule a previous agent process left on disk; clean up and report the rest."""
        records, broken = self.records.load_all()
        for path, exc in broken:
            log.error("unreadable capsule record %s: %s; moved aside", path, exc)
            shutil.move(path, path.with_suffix(".broken"))
            self.events.publish("sandbox.error", path.stem, f"unreadable agent record: {exc}")
        for rec in records:
            running: RunningCapsule | None = None
            reason = "capsule was still being created when the agent stopped"
            if rec.status not in ("starting", "stopping") and rec.state_dir:
                try:
                    running = await self.runtime.adopt(Path(rec.state_dir))
                    reason = "runtime could not re-adopt the capsule"
                except Exception as exc:
                    reason = f"re-adoption failed: {exc}"
            if rec.status == "stopping":
                reason = "capsule was being destroyed when the agent stopped"
            if running is None:
                self._capsules[rec.id] = rec
                await self._discard(rec, rec.network_slot(), destroy=True)
                if rec.id not in self._capsules:  # else kept as `error`, already reported
                    self.events.publish("sandbox.stopped", rec.id, reason)
                continue
            if rec.status in ("pausing", "resuming"):
                rec.status = "paused" if rec.status == "pausing" else "running"
            if rec.status not in ("running", "paused"):
                rec.status = "running"
            rec.attach(running)
            rec.touch()  # the TTL restarts with the agent: no activity was observable meanwhile
            self._capsules[rec.id] = rec
            self.records.save(rec)
            self.metrics.track(rec.id, rec.vcpus)
            log.info("re-adopted %s (%s)", rec.id, rec.status)
        await self.pool.readopt()
        keep = {rec.slot["index"] for rec in self._capsules.values() if rec.slot} | self.pool.slot_indexes()
        for index in await self.slots.reclaim(keep):
            log.warning("released slot %s: leased by this agent, used by no capsule", index)

    def metrics_for(self, capsule_id: str, range_name: str) -> CapsuleMetrics:
        self._get(capsule_id)
        if range_name not in RANGES:
            raise BadRequest(f"invalid range {range_name!r}; one of {', '.join(RANGES)}")
        points = self.metrics.query(capsule_id, range_name, time.time()) or []
        return CapsuleMetrics(
            sandbox_id=capsule_id,
            range=range_name,
            points=[MetricPoint(timestamp_unix=int(p.timestamp), cpu_pct=round(p.cpu_pct, 2),
                                mem_bytes=p.mem_bytes, disk_bytes=p.disk_bytes) for p in points],
        )

    # ---- guest operations (envd) ----------------------------------------------------------------

    def _guest(self, capsule_id: str) -> guest_ops.Guest:
        rec = self._running(capsule_id)
        rec.touch()
        self.last_foreground = time.monotonic()
        return self._guest_of(rec)

    def _guest_of(self, rec: CapsuleRecord) -> guest_ops.Guest:
        g = self._guests.get(rec.id)
        if g is None:
            assert rec.envd_url is not None
            g = guest_ops.Guest(rec.id, rec.envd_url, rec.envd_access_token, on_output=rec.touch)
            self._guests[rec.id] = g
        return g

    async def _drop_guest(self, capsule_id: str) -> None:
        g = self._guests.pop(capsule_id, None)
        if g is not None:
            await g.aclose()

    async def exec(self, capsule_id: str, req: ExecRequest) -> ExecResponse | BackgroundExecResponse:
        g = self._guest(capsule_id)
        if req.background:
            return await g.start_background(req)
        rec = self._get(capsule_id)
        rec.busy += 1  # a foreground command still running is activity, however quiet it is
        try:
            return await g.run(req)
        finally:
            rec.busy -= 1
            rec.touch()

    async def guest_call(self, capsule_id: str, op: GuestOp[Req, Resp], req: Req) -> Resp:
        """One of the unary guest operations (`wire.agent.GUEST_OPS`)."""
        method = guest_ops.OPERATIONS.get(op.name)
        if method is None:
            raise NotFound(f"no guest operation {op.name!r}")
        return cast(Resp, await method(self._guest(capsule_id), req))

    def process_stream(self, capsule_id: str, selector: str) -> AsyncIterator[dict[str, object]]:
        """Output of a running process as the contract's stream messages, until it exits."""
        return self._guest(capsule_id).connect(selector)

    async def exec_stream(self, capsule_id: str, start: StreamStart) -> guest_ops.StreamSession:
        return await self._guest(capsule_id).exec_stream(start)

    async def pty(self, capsule_id: str, first: PtyStart | PtyConnect) -> guest_ops.PtySession:
        return await self._guest(capsule_id).pty(first)

    async def read_file(self, capsule_id: str, path: str) -> AsyncIterator[bytes]:
        """The file's bytes in chunks; raises NotFound before yielding if there is no such file."""
        return await self._guest(capsule_id).read_file(path)

    async def write_file(self, capsule_id: str, path: str, chunks: AsyncIterator[bytes]) -> None:
        await self._guest(capsule_id).write_file(path, chunks)



def _template_out(t: TemplateInfo) -> TemplateOut:
    # What the template's capsules run, for whoever lists templates (the contract's metadata is str → str).
    service = {"start_cmd": t.start.cmd, "start_user": t.start.user} if t.start is not None else {}
    return TemplateOut(name=t.name, type=t.type, vcpus=t.vcpus, memory_mb=t.memory_mb,
                       size_bytes=t.size_bytes, created_at=t.created_at, platform=t.platform,
                       metadata={**t.metadata, **service})
