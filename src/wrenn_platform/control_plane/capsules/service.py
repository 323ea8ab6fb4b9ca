"""`CapsuleService`: capsule records and their life cycle.

A lifecycle call checks the state machine, moves the record to the transient status with a
conditional UPDATE (so two racing calls cannot both win), and a background task drives the agent
and writes the outcome; the routes answer once it settled or `lifecycle_settle_seconds` passed
(`settled`), 202 either way. Operations on one capsule are serialised by a per-capsule lock, so a
destroy issued while the capsule is still starting runs after the create. A destroy of a capsule
already stopping or stopped changes nothing and answers it as it is.

A failed operation is logged (WARNING, capsule id and reason), its reason written to the record's
`error` (shown as `metadata.error`, cleared by the next operation that succeeds) and so carried by
the `capsule.<action>` event derived from the status change (`events/derive.py`).

When the agent cannot be reached the record keeps its transient status; the reconciler settles it
from what the agent reports once it is back (`reconciler.py`), never guessing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wrenn_platform.agent_link.client import AgentClient
from wrenn_platform.agent_link.errors import AgentUnreachable
from wrenn_platform.wire import agent as agent_wire
from wrenn_platform.wire.api.capsules import Capsule as CapsuleOut
from wrenn_platform.wire.api.capsules import CreateCapsuleRequest, capsule_metadata
from wrenn_platform.wire.warm_pool import PoolKey

from ..auth.principal import Principal
from ..db.models import Capsule, Template
from ..db.types import utcnow
from ..errors import bad_request, not_found
from ..hosts.tokens import signing_secret
from ..settings import Settings
from ..team_limits import check_new_capsule
from . import states
from .agents import AgentRegistry, agent_errors
from .running_cache import PROXY_AUTH_API_KEY, PROXY_AUTH_LABEL, RunningCache
from .scheduler import pick_host
from .warm_pool import WarmView

log = logging.getLogger(__name__)

Op = Callable[[AgentClient], Awaitable[agent_wire.CapsuleInfo | None]]


@dataclass(frozen=True)
class CreateOptions:
    env_vars: dict[str, str] = field(default_factory=dict)
    default_user: str | None = None  # None: the host's default
    ends_at: datetime | None = None  # an absolute end of life (`Capsule.ends_at`)
    on_end: str = "kill"  # or "pause"


def envd_access_token(secret: bytes, capsule_id: str) -> str:
    return hmac.new(secret, b"envd-access-token:" + capsule_id.encode(), hashlib.sha256).hexdigest()


def to_out(capsule: Capsule) -> CapsuleOut:
    return CapsuleOut(
        id=capsule.id, status=capsule.status, template=capsule.template,
        vcpus=capsule.vcpus, memory_mb=capsule.memory_mb, timeout_sec=capsule.timeout_sec,
        guest_ip=capsule.guest_ip, host_ip=capsule.host_ip, created_at=capsule.created_at,
        started_at=capsule.started_at, last_active_at=capsule.last_active_at, last_updated=capsule.last_updated,
        metadata=capsule_metadata(capsule.labels, capsule.error), disk_size_mb=capsule.disk_size_mb,
    )


class CapsuleService:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], agents: AgentRegistry,
                 settings: Settings) -> None:
        self.sessionmaker = sessionmaker
        self.agents = agents
        self.settings = settings
        self._locks: dict[str, asyncio.Lock] = {}
        self._team_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: dict[str, int] = {}  # capsule id → lifecycle tasks queued or running here
        self._latest: dict[str, asyncio.Task[None]] = {}  # capsule id → its newest lifecycle task here
        self.running = RunningCache(sessionmaker.kw.get("bind"))
        self.warm = WarmView(agents)

    async def aclose(self) -> None:
        """Let running lifecycle tasks finish (bounded), so no record is left mid-transition."""
        await self.warm.aclose()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=60)
            for task in pending:
                task.cancel()

    def busy(self, capsule_id: str) -> bool:
        """A lifecycle task of this process is queued or running for the capsule."""
        return capsule_id in self._inflight

    def lock(self, capsule_id: str) -> asyncio.Lock:
        return self._locks.setdefault(capsule_id, asyncio.Lock())

    def envd_token(self, capsule_id: str) -> str:
        """The capsule's envd access token: derived from the control plane's secret, so every replica
        can hand it to an E2B client (`envdAccessToken`) without storing it."""
        return envd_access_token(signing_secret(self.settings), capsule_id)

    def team_lock(self, team_id: str) -> asyncio.Lock:
        """Held while a team's limits are checked and the new record committed (`team_limits`)."""
        return self._team_locks.setdefault(team_id, asyncio.Lock())

    # ---- lookups ----------------------------------------------------------------------------------

    @staticmethod
    async def owned(db: AsyncSession, principal: Principal, capsule_id: str) -> Capsule:
        """The caller's capsule; another team's capsule is indistinguishable from a missing one."""
        capsule = await db.get(Capsule, capsule_id)
        if capsule is None or capsule.team_id != principal.team_id:
            raise not_found(f"capsule {capsule_id} not found")
        return capsule

    async def running_client(self, db: AsyncSession, principal: Principal, capsule_id: str,
                             doing: str) -> AgentClient:
        running = self.running.get(capsule_id)
        if running is None:
            generation = self.running.generation
            capsule = await self.owned(db, principal, capsule_id)
            states.require(capsule, states.RUNNING, doing)
            self.running.remember(capsule, generation)
            return self.agents.get(capsule.host_id)
        if running.team_id != principal.team_id:
            raise not_found(f"capsule {capsule_id} not found")
        return self.agents.get(running.host_id)

    @staticmethod
    async def list(db: AsyncSession, principal: Principal) -> list[Capsule]:
        rows = await db.execute(select(Capsule).where(Capsule.team_id == principal.team_id)
                                .order_by(Capsule.created_at.desc()))
        return list(rows.scalars().all())

    # ---- life cycle -------------------------------------------------------------------------------

    async def create(self, db: AsyncSession, principal: Principal, req: CreateCapsuleRequest,
                     options: CreateOptions | None = None) -> Capsule:
        """Record a new capsule and start it in the background (`options`: what only the E2B front door sets)."""
        options = options or CreateOptions()
        proxy_auth = (req.metadata or {}).get(PROXY_AUTH_LABEL)
        if proxy_auth is not None and proxy_auth != PROXY_AUTH_API_KEY:
            raise bad_request(f"metadata {PROXY_AUTH_LABEL}: {proxy_auth!r} is not a proxy access rule "
                              f"(the one there is: {PROXY_AUTH_API_KEY!r})")
        async with self.team_lock(principal.team_id):
            await check_new_capsule(db, principal.team_id, self.settings, vcpus=req.vcpus, memory_mb=req.memory_mb,
                                    disk_mb=req.disk_size_mb)
            snapshot = (await db.execute(select(Template).where(Template.team_id == principal.team_id,
                                                                Template.name == req.template))).scalar_one_or_none()
            key = PoolKey(req.template, req.vcpus, req.memory_mb, req.disk_size_mb)
            # A pooled capsule got its envd token at the claim, not the one derived from its id that the
            # E2B front door hands out: requests with E2B's options take the cold path.
            poolable = snapshot is None and options == CreateOptions()
            warm, pooled = await self.warm.hosts_for(key) if poolable else (set(), set())
            host_id = await pick_host(db, self.agents.host_ids(), self.settings.host_offline_after_seconds,
                                      team_id=principal.team_id, memory_mb=req.memory_mb,
                                      pinned=snapshot.host_id if snapshot is not None else None, prefer=warm)
            timeout = 0 if req.timeout_sec <= 0 else max(req.timeout_sec, self.settings.capsule_min_timeout_sec)
            if host_id in pooled:
                claimed = await self._claim(db, principal, host_id, key, req, timeout)
                if claimed is not None:
                    return claimed
            capsule = Capsule(team_id=principal.team_id, host_id=host_id, status="starting", template=req.template,
                              vcpus=req.vcpus, memory_mb=req.memory_mb, disk_size_mb=req.disk_size_mb,
                              timeout_sec=timeout, labels=dict(req.metadata or {}), ends_at=options.ends_at,
                              on_end=options.on_end)
            db.add(capsule)
            await db.commit()
        agent_req = agent_wire.CreateCapsuleRequest(
            capsule_id=capsule.id, team_id=capsule.team_id, template=capsule.template, vcpus=capsule.vcpus,
            memory_mb=capsule.memory_mb, disk_size_mb=capsule.disk_size_mb, timeout_sec=capsule.timeout_sec,
            metadata=dict(capsule.labels), env_vars=dict(options.env_vars), default_user=options.default_user,
            envd_access_token=self.envd_token(capsule.id),
        )
        self._spawn(capsule.id, host_id, "starting", "running", lambda c: c.create(agent_req))
        return capsule

    async def _claim(self, db: AsyncSession, principal: Principal, host_id: str, key: PoolKey,
                     req: CreateCapsuleRequest, timeout_sec: int) -> Capsule | None:
        """A capsule from the host's warm pool, recorded under the pooled capsule's id and already
        running; None (the caller creates cold) when the pool turned out empty or the claim failed."""
        agent_req = agent_wire.CreateCapsuleRequest(
            team_id=principal.team_id, template=req.template, vcpus=req.vcpus, memory_mb=req.memory_mb,
            disk_size_mb=req.disk_size_mb, timeout_sec=timeout_sec, metadata=dict(req.metadata or {}),
        )
        client = self.agents.get(host_id)
        try:
            info = await client.claim(agent_req)
        except Exception as exc:
            log.warning("warm-pool claim on host %s failed: %s; creating the capsule cold", host_id, exc)
            self.warm.empty(host_id, key)
            return None
        if info is None:
            self.warm.empty(host_id, key)
            return None
        self.warm.took(host_id, key)
        # Held while the record is written, so the reconciler does not take the capsule for an orphan.
        async with self.lock(info.id):
            try:
                capsule = Capsule(id=info.id, team_id=principal.team_id, host_id=host_id, status="starting",
                                  template=req.template, vcpus=req.vcpus, memory_mb=req.memory_mb,
                                  disk_size_mb=req.disk_size_mb, timeout_sec=timeout_sec,
                                  labels=dict(req.metadata or {}))
                db.add(capsule)
                await db.flush()  # inserted as `starting`, then `running`: the same events as a cold create
                for name, value in info_values(info).items():
                    setattr(capsule, name, value)
                await db.commit()
            except BaseException:
                log.exception("recording claimed capsule %s failed; destroying it on host %s", info.id, host_id)
                with contextlib.suppress(Exception):
                    await client.destroy(info.id)
                raise
        log.info("capsule %s claimed from the warm pool of host %s for team %s", info.id, host_id,
                 principal.team_id)
        return capsule

    async def destroy(self, db: AsyncSession, capsule: Capsule) -> Capsule:
        if capsule.status in states.GOING:
            return capsule  # idempotent: already being destroyed, or gone
        await self._transition(db, capsule, states.DESTROYABLE, "stopping", "destroy")

        async def op(client: AgentClient) -> None:
            with contextlib.suppress(agent_wire.NotFound):  # already gone from the host: done
                await client.destroy(capsule.id)

        self._spawn(capsule.id, capsule.host_id, "stopping", "stopped", op)
        return capsule

    async def pause(self, db: AsyncSession, capsule: Capsule) -> Capsule:
        await self._transition(db, capsule, states.PAUSABLE, "pausing", "pause")
        self._spawn(capsule.id, capsule.host_id, "pausing", "paused", lambda c: c.pause(capsule.id))
        return capsule

    async def resume(self, db: AsyncSession, capsule: Capsule) -> Capsule:
        await self.start_resume(db, capsule)
        return capsule

    async def settled(self, db: AsyncSession, capsule: Capsule) -> Capsule:
        """`capsule` once this process's lifecycle task for it has finished, or as it is after
        `lifecycle_settle_seconds` (still transient; the task goes on)."""
        task = self._latest.get(capsule.id)
        if task is None or self.settings.lifecycle_settle_seconds <= 0:
            return capsule  # nothing under way here (an idempotent destroy), or no wait wanted
        await asyncio.wait({task}, timeout=self.settings.lifecycle_settle_seconds)
        await db.refresh(capsule)
        return capsule

    async def start_resume(self, db: AsyncSession, capsule: Capsule) -> asyncio.Task[None]:
        """`resume`, handing back the task that drives it (done once the record says the outcome)."""
        await self._transition(db, capsule, states.RESUMABLE, "resuming", "resume")
        return self._spawn(capsule.id, capsule.host_id, "resuming", "running", lambda c: c.resume(capsule.id))

    async def ping(self, db: AsyncSession, capsule: Capsule) -> None:
        states.require(capsule, states.RUNNING, "ping")
        with agent_errors():
            await self.agents.get(capsule.host_id).ping(capsule.id)
        capsule.last_active_at = utcnow()
        await db.commit()

    async def _transition(self, db: AsyncSession, capsule: Capsule, allowed: frozenset[str], to: str,
                          doing: str) -> None:
        states.require(capsule, allowed, doing)
        if to != "stopping":
            self.agents.get(capsule.host_id)  # 502 now rather than a record stuck in a transient status
        result = await db.execute(update(Capsule).where(Capsule.id == capsule.id, Capsule.status.in_(allowed))
                                  .values(status=to, last_updated=utcnow()))
        await db.commit()
        await db.refresh(capsule)
        if result.rowcount != 1:  # type: ignore[attr-defined]
            states.require(capsule, frozenset(), doing)

    # ---- background driving -----------------------------------------------------------------------

    def _spawn(self, capsule_id: str, host_id: str | None, transient: str, target: str, op: Op) -> asyncio.Task[None]:
        task = asyncio.create_task(self._drive(capsule_id, host_id, transient, target, op),
                                   name=f"capsule-{transient}-{capsule_id}")
        self._tasks.add(task)
        self._inflight[capsule_id] = self._inflight.get(capsule_id, 0) + 1
        self._latest[capsule_id] = task
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: self._latest.pop(capsule_id, None) if self._latest.get(capsule_id) is t
                               else None)
        return task

    async def _drive(self, capsule_id: str, host_id: str | None, transient: str, target: str, op: Op) -> None:
        try:
            async with self.lock(capsule_id):
                values = await self._run_op(capsule_id, host_id, transient, target, op)
                if values is not None:
                    await self.write(capsule_id, values, only_if=transient)
        except Exception:
            log.exception("%s of capsule %s failed", states.ACTIONS[transient], capsule_id)
        finally:
            left = self._inflight.get(capsule_id, 1) - 1
            if left > 0:
                self._inflight[capsule_id] = left
            else:
                self._inflight.pop(capsule_id, None)
            if target == "stopped":
                self._locks.pop(capsule_id, None)

    async def _run_op(self, capsule_id: str, host_id: str | None, transient: str, target: str,
                      op: Op) -> dict[str, Any] | None:
        async with self.sessionmaker() as db:
            current = await db.get(Capsule, capsule_id)
            if current is None or current.status != transient:
                return None  # someone (a destroy, the reconciler) moved it on while we waited
        try:
            client = self.agents.get(host_id)
            info = await op(client)
        except AgentUnreachable as exc:
            log.warning("%s of %s: %s; left %s for the reconciler", transient, capsule_id, exc.message, transient)
            return None
        except agent_wire.AgentError as exc:
            return await self._after_failure(capsule_id, host_id, transient, exc)
        except Exception as exc:  # e.g. no connection to the host (ApiError from the registry)
            log.warning("%s of capsule %s failed: %s; left %s for the reconciler", states.ACTIONS[transient],
                        capsule_id, exc, transient)
            return None
        values: dict[str, Any] = {"status": target, "error": ""}
        if target == "stopped":
            values["stopped_at"] = utcnow()
        if info is not None:
            values.update(info_values(info))
            values["status"] = target
        return values

    async def _after_failure(self, capsule_id: str, host_id: str | None, transient: str,
                             exc: agent_wire.AgentError) -> dict[str, Any]:
        """The agent refused or failed: take its own view of the capsule when it has one."""
        message = exc.message[:1000]
        log.warning("%s of capsule %s failed: %s", states.ACTIONS[transient], capsule_id, message)
        if transient == "starting":
            return {"status": "error", "error": message}
        with contextlib.suppress(Exception):
            info = await self.agents.get(host_id).get(capsule_id)
            return {**info_values(info), "error": message}
        return {"status": "error", "error": message}

    async def write(self, capsule_id: str, values: dict[str, Any], only_if: str | None = None) -> bool:
        async with self.sessionmaker() as db:
            stmt = update(Capsule).where(Capsule.id == capsule_id)
            if only_if is not None:
                stmt = stmt.where(Capsule.status == only_if)
            result = await db.execute(stmt.values(**values, last_updated=utcnow()))
            await db.commit()
            return bool(result.rowcount)  # type: ignore[attr-defined]


def info_values(info: agent_wire.CapsuleInfo) -> dict[str, Any]:
    """The record fields an agent's view of a capsule determines."""
    return {
        "status": info.status,
        "guest_ip": info.guest_ip,
        "host_ip": info.host_ip,
        "timeout_sec": info.timeout_sec,
        "started_at": info.started_at,
        "last_active_at": info.last_active_at,
        "labels": dict(info.metadata),
    }
