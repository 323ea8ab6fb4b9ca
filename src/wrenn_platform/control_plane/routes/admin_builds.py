"""`/v1/admin/builds*`: queue a template build (202), list, get (with its log), cancel.

The recipe and the build record are `wire/api/builds.py`; the work is `builds/`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.wire.api.builds import Build, CreateBuildRequest

from ..auth.principal import Principal, require_admin
from ..builds import service
from ..builds.worker import BuildWorker
from ..deps import get_db

router = APIRouter(prefix="/v1/admin/builds", tags=["admin"])

Admin = Depends(require_admin)
Db = Depends(get_db)


@router.post("", status_code=202, operation_id="adminCreateBuild")
async def create_build(body: CreateBuildRequest, request: Request, admin: Principal = Admin,
                       db: AsyncSession = Db) -> Build:
    build = await service.submit(db, admin, body)
    worker: BuildWorker = request.app.state.builds
    worker.wakeup.set()
    return service.to_out(build)


@router.get("", operation_id="adminListBuilds")
async def list_builds(_: Principal = Admin, db: AsyncSession = Db) -> list[Build]:
    return [service.to_out(b) for b in await service.list_builds(db)]


@router.get("/{id}", operation_id="adminGetBuild")
async def get_build(id: str, _: Principal = Admin, db: AsyncSession = Db) -> Build:
    return service.to_out(await service.get(db, id))


@router.post("/{id}/cancel", status_code=204, response_class=Response, operation_id="adminCancelBuild")
async def cancel_build(id: str, _: Principal = Admin, db: AsyncSession = Db) -> Response:
    await service.cancel(db, id)
    return Response(status_code=204)
