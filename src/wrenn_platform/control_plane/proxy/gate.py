"""Who may reach a capsule's port, and bringing the capsule to `running` for it.

- The capsule id is the key by default (as upstream): anyone with the URL reaches the port. A
  capsule created with metadata `wrenn.proxy_auth: api_key` opts in to requiring `X-API-Key`
  with a key of its own team (401 without a valid key, 404 with another team's, as if absent).
- Unknown capsules are 404; stopped, stopping and failed ones 409.
- A paused capsule is resumed by the request (auto-resume) and the request waits until it runs,
  at most `proxy_resume_timeout_seconds` (then 504). Concurrent requests share one resume: the
  first starts it through `CapsuleService.start_resume`, the others wait on its task; a resume
  started elsewhere (the API, another replica) is waited for by watching the record.
- Running capsules are found in the capsule service's running cache, without the database.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.requests import Request
from starlette.types import Scope

from ..auth.principal import _api_key_principal
from ..capsules.running_cache import RunningCapsule, running_view
from ..capsules.service import CapsuleService
from ..db.models import Capsule
from ..errors import ApiError, conflict, not_found, unauthorized
from ..settings import Settings

log = logging.getLogger(__name__)

_POLL_S = 0.02
_SETTLING = frozenset({"starting", "pausing", "resuming"})


def _not_found(capsule_id: str) -> ApiError:
    return not_found(f"capsule {capsule_id} not found")


class ProxyGate:
    def __init__(self, capsules: CapsuleService, settings: Settings) -> None:
        self.capsules = capsules
        self.settings = settings
        self._waking: dict[str, asyncio.Task[None]] = {}

    async def admit(self, capsule_id: str, scope: Scope) -> RunningCapsule:
        """The running capsule behind a request, or the `ApiError` to answer with."""
        running = self.capsules.running.get(capsule_id)
        if running is None:
            return await self.settle(capsule_id, scope)
        if running.proxy_key_required:
            await self._check_key(scope, capsule_id, running.team_id)
        return running

    async def settle(self, capsule_id: str, scope: Scope) -> RunningCapsule:
        """Read the record; wait for, or start, what brings the capsule to `running`."""
        deadline = time.monotonic() + self.settings.proxy_resume_timeout_seconds
        checked = woke = False
        while True:
            generation = self.capsules.running.generation
            async with self.capsules.sessionmaker() as db:
                capsule = await db.get(Capsule, capsule_id)
            if capsule is None:
                raise _not_found(capsule_id)
            view = running_view(capsule)
            if view.proxy_key_required and not checked:
                await self._check_key(scope, capsule_id, view.team_id)
                checked = True
            if capsule.status == "running":
                self.capsules.running.remember(capsule, generation)
                return view
            if capsule.status == "paused":
                if woke:
                    raise ApiError(502, "bad_gateway", f"capsule {capsule_id} could not be resumed: "
                                   f"{capsule.error or 'the resume failed'}")
                await self._wake(capsule_id, deadline)
                woke = True
                continue
            if capsule.status not in _SETTLING:
                raise conflict(f"capsule {capsule_id} is {capsule.status}: its ports cannot be reached")
            if time.monotonic() >= deadline:
                raise self._timeout(capsule_id, capsule.status)
            await asyncio.sleep(_POLL_S)

    def _timeout(self, capsule_id: str, status: str) -> ApiError:
        return ApiError(504, "gateway_timeout", f"capsule {capsule_id} is still {status} after "
                        f"{self.settings.proxy_resume_timeout_seconds:g} s")

    async def _wake(self, capsule_id: str, deadline: float) -> None:
        task = self._waking.get(capsule_id)
        if task is None:
            task = asyncio.create_task(self._resume(capsule_id), name=f"proxy-resume-{capsule_id}")
            self._waking[capsule_id] = task
            task.add_done_callback(lambda _: self._waking.pop(capsule_id, None))
        try:
            await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise self._timeout(capsule_id, "resuming") from None

    async def _resume(self, capsule_id: str) -> None:
        async with self.capsules.sessionmaker() as db:
            capsule = await db.get(Capsule, capsule_id)
            if capsule is None or capsule.status != "paused":
                return
            try:
                drive = await self.capsules.start_resume(db, capsule)
            except ApiError as exc:
                if exc.status == 409:
                    return  # resumed by someone else meanwhile: the caller watches the record
                raise
        log.info("capsule %s: resuming for a request to one of its ports", capsule_id)
        await drive

    async def _check_key(self, scope: Scope, capsule_id: str, team_id: str) -> None:
        async with self.capsules.sessionmaker() as db:
            principal = await _api_key_principal(Request(scope), db)  # 401 for a key that is not valid
        if principal is None:
            raise unauthorized(f"capsule {capsule_id} requires an API key of its team (X-API-Key) on its ports")
        if principal.team_id != team_id:
            raise _not_found(capsule_id)
