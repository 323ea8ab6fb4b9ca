"""One build: capsule from the base template → files → steps → service started and ready (if the
recipe has one) → snapshot → capsule destroyed.

Everything goes through the capsule service and the tenant snapshot handler, acting for the
build's team. Each step's command, output and exit code are appended to the build's log as they
finish. While a step runs the record is watched: once it reads `cancelled` (the cancel route, from
any replica) the step is abandoned and the capsule destroyed, which ends whatever ran in it. Each check also
renews the build's lease: a build whose worker died is failed by the next worker (`worker.py`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import shlex
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wrenn_platform.agent_link.client import AgentClient
from wrenn_platform.wire import agent as agent_wire
from wrenn_platform.wire.api.builds import BuildFile, CreateBuildRequest
from wrenn_platform.wire.api.capsules import CreateCapsuleRequest

from ..auth.principal import Principal
from ..capsules import snapshots
from ..capsules.agents import agent_errors
from ..capsules.service import CapsuleService
from ..db.models import Capsule, TemplateBuild
from ..db.types import utcnow
from ..errors import ApiError
from .service import recipe_of

log = logging.getLogger(__name__)
T = TypeVar("T")

CANCEL_CHECK_S = 0.5
LEASE = timedelta(seconds=30)
SETTLE_TIMEOUT_S = 120.0
_LOG_LIMIT = 64 * 1024  # of one step's output kept in the log


class BuildFailed(Exception):
    pass


class BuildCancelled(Exception):
    pass


class BuildRunner:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], capsules: CapsuleService,
                 build: TemplateBuild) -> None:
        self.sessionmaker = sessionmaker
        self.capsules = capsules
        self.build_id = build.id
        self.name = build.name
        self.recipe: CreateBuildRequest = recipe_of(build)
        self.principal = Principal(kind="session", team_id=build.team_id, user_id=build.created_by, role=None,
                                   is_admin=True, actor_name=f"template build {build.id}")
        self.capsule_id: str | None = None
        self.staging = f"/tmp/.wrenn-build-{build.id}"

    async def run(self) -> None:
        try:
            await self._log(f"# build {self.build_id}: template {self.name!r} from {self.recipe.base_template!r}\n")
            client = await self._guarded(self._start_capsule())
            for index, file in enumerate(self.recipe.files):
                await self._guarded(self._put(client, index, file))
            if self.recipe.files:
                await self._guarded(self._step(client, f"rm -rf {shlex.quote(self.staging)}"))
            for step in self.recipe.steps:
                await self._guarded(self._step(client, step))
            await self._guarded(self._snapshot())
            await self._finish("succeeded", "")
        except BuildCancelled:
            await self._log("# cancelled\n")
        except asyncio.CancelledError:
            await self._finish("failed", "interrupted: the control plane stopped")
            raise
        except Exception as exc:  # the build failed; the worker carries on with the next one
            message = exc.message if isinstance(exc, ApiError | agent_wire.AgentError) else str(exc)
            await self._log(f"# failed: {message}\n")
            await self._finish("failed", message[:1000])
        finally:
            await self._destroy_capsule()

    # ---- the phases ------------------------------------------------------------------------------

    async def _start_capsule(self) -> AgentClient:
        r = self.recipe
        req = CreateCapsuleRequest(template=r.base_template, vcpus=r.vcpus, memory_mb=r.memory_mb,
                                   disk_size_mb=r.disk_size_mb, metadata={"build_id": self.build_id})
        async with self.sessionmaker() as db:
            capsule = await self.capsules.create(db, self.principal, req)
            self.capsule_id = capsule.id
            await self._update(capsule_id=capsule.id)
            await self._settle(db, capsule)
            if capsule.status != "running":
                raise BuildFailed(f"build capsule {capsule.id} is {capsule.status}: {capsule.error}")
            client = await self.capsules.running_client(db, self.principal, capsule.id, "build in")
        await self._log(f"# capsule {capsule.id} running\n")
        return client

    async def _put(self, client: AgentClient, index: int, file: BuildFile) -> None:
        """Upload (as the capsule's default user, the only one file writes use) to a staging path,
        then install it in place as the recipe's user, so any path the steps could write works."""
        data = base64.b64decode(file.content) if file.encoding == "base64" else file.content.encode()

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        assert self.capsule_id is not None
        staged = f"{self.staging}/{index}"
        with agent_errors():
            await client.write_file(self.capsule_id, staged, chunks())
        await self._log(f"# wrote {file.path} ({len(data)} bytes)\n")
        mode = file.mode or "0644"
        await self._step(client, f"install -D -m {mode} {shlex.quote(staged)} {shlex.quote(file.path)} && "
                                 f"rm -f {shlex.quote(staged)}")

    async def _step(self, client: AgentClient, step: str) -> None:
        assert self.capsule_id is not None
        r = self.recipe
        await self._log(f"$ {step}\n")
        req = agent_wire.ExecRequest(cmd="sh", args=["-c", step], timeout_sec=r.step_timeout_sec, envs=r.envs,
                                     cwd=r.cwd, user=r.user)
        with agent_errors():
            result = await client.exec(self.capsule_id, req)
        assert isinstance(result, agent_wire.ExecResponse)
        output = (result.stdout + result.stderr)[-_LOG_LIMIT:]
        await self._log(output + ("" if not output or output.endswith("\n") else "\n"))
        if result.exit_code != 0:
            raise BuildFailed(f"step exited with {result.exit_code}: {step}")

    async def _snapshot(self) -> None:
        assert self.capsule_id is not None
        start = self.recipe.start
        if start is not None:
            check = start.ready.describe() if start.ready is not None else "none"
            await self._log(f"# starting the service as {start.user}: {start.cmd} (readiness check: {check})\n")
        async with self.sessionmaker() as db:
            template = await snapshots.take(self.capsules, db, self.principal, self.capsule_id, self.name, start)
        await self._log(f"# template {template.name!r} created ({template.size_bytes} bytes)\n")

    async def _destroy_capsule(self) -> None:
        if self.capsule_id is None:
            return
        with contextlib.suppress(Exception):
            async with self.sessionmaker() as db:
                capsule = await db.get(Capsule, self.capsule_id)
                if capsule is not None and capsule.status not in ("stopped", "stopping"):
                    await self.capsules.destroy(db, capsule)

    # ---- helpers ---------------------------------------------------------------------------------

    async def _guarded(self, work: Awaitable[T]) -> T:
        """Run `work`, abandoning it (BuildCancelled) once the record says the build was cancelled."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=CANCEL_CHECK_S)
                if done:
                    return task.result()
                if not await self._renew():
                    raise BuildCancelled()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _settle(self, db: AsyncSession, capsule: Capsule) -> None:
        for _ in range(int(SETTLE_TIMEOUT_S / 0.05)):
            if not self.capsules.busy(capsule.id):
                break
            await asyncio.sleep(0.05)
        await db.refresh(capsule)

    async def _renew(self) -> bool:
        """Extend the build's lease; False once it is no longer running (cancelled, or reaped)."""
        async with self.sessionmaker() as db:
            result = await db.execute(update(TemplateBuild).where(TemplateBuild.id == self.build_id,
                                                                  TemplateBuild.status == "running")
                                      .values(lease_until=utcnow() + LEASE))
            await db.commit()
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _update(self, **values: Any) -> None:
        async with self.sessionmaker() as db:
            await db.execute(update(TemplateBuild).where(TemplateBuild.id == self.build_id).values(**values))
            await db.commit()

    async def _log(self, text: str) -> None:
        if text:
            await self._update(logs=TemplateBuild.logs + text)

    async def _finish(self, status: str, error: str) -> None:
        async with self.sessionmaker() as db:
            await db.execute(update(TemplateBuild).where(TemplateBuild.id == self.build_id,
                                                         TemplateBuild.status == "running")
                             .values(status=status, error=error, finished_at=utcnow()))
            await db.commit()
