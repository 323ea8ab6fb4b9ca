"""The operator's hosts API: `POST/GET /v1/hosts`, `GET/DELETE /v1/hosts/{id}`, `POST
/v1/hosts/{id}/token`, `GET /v1/hosts/{id}/delete-preview`, `GET/POST /v1/hosts/{id}/tags`,
`DELETE /v1/hosts/{id}/tags/{tag}`. Session only; the rules are in `hosts_admin/access.py`.

Mounted after `hosts.py` (module order), so its literal paths (`/v1/hosts/register`...) match first.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.wire.api.hosts import Host
from wrenn_platform.wire.api.hosts_admin import (
    TAG_PATTERN,
    AddTagRequest,
    CreateHostRequest,
    CreateHostResponse,
    HostDeletePreview,
    HostHasCapsulesError,
)

from ..auth.principal import Principal, require_session
from ..capsules.lifespan import get_capsules
from ..capsules.service import CapsuleService
from ..deps import get_db
from ..errors import responses
from ..hosts_admin import service
from .hosts import host_out

router = APIRouter(prefix="/v1/hosts", tags=["hosts"])

Auth = Depends(require_session)
Db = Depends(get_db)


@router.post("", status_code=201, responses=responses(400, 403), operation_id="createHost")
async def create_host(body: CreateHostRequest, principal: Principal = Auth,
                      db: AsyncSession = Db) -> CreateHostResponse:
    host, token = await service.create(db, principal, body)
    return CreateHostResponse(host=host_out(host), registration_token=token)


@router.get("", operation_id="listHosts")
async def list_hosts(principal: Principal = Auth, db: AsyncSession = Db) -> list[Host]:
    return [host_out(h) for h in await service.list_hosts(db, principal)]


@router.get("/{id}", responses=responses(404), operation_id="getHost")
async def get_host(id: str, principal: Principal = Auth, db: AsyncSession = Db) -> Host:
    return host_out(await service.access.visible_host(db, principal, id))


@router.delete("/{id}", status_code=204, operation_id="deleteHost", responses={
    **responses(403), 409: {"model": HostHasCapsulesError, "description": "Host has active capsules"}})
async def delete_host(id: str, force: bool = Query(False, description="Destroy the host's capsules first."),
                      principal: Principal = Auth, db: AsyncSession = Db,
                      capsules: CapsuleService = Depends(get_capsules)) -> Response:
    await service.delete_host(db, principal, capsules, id, force)
    return Response(status_code=204)


@router.post("/{id}/token", status_code=201, responses=responses(403, 409), operation_id="regenerateHostToken")
async def regenerate_token(id: str, principal: Principal = Auth, db: AsyncSession = Db) -> CreateHostResponse:
    host, token = await service.regenerate_token(db, principal, id)
    return CreateHostResponse(host=host_out(host), registration_token=token)


@router.get("/{id}/delete-preview", responses=responses(403, 404), operation_id="getHostDeletePreview")
async def delete_preview(id: str, principal: Principal = Auth, db: AsyncSession = Db) -> HostDeletePreview:
    host, held = await service.delete_preview(db, principal, id)
    return HostDeletePreview(host=host_out(host), sandbox_ids=held)


@router.get("/{id}/tags", operation_id="listHostTags")
async def list_tags(id: str, principal: Principal = Auth, db: AsyncSession = Db) -> list[str]:
    return await service.list_tags(db, principal, id)


@router.post("/{id}/tags", status_code=204, responses=responses(404), operation_id="addHostTag")
async def add_tag(id: str, body: AddTagRequest, principal: Principal = Auth, db: AsyncSession = Db) -> Response:
    await service.add_tag(db, principal, id, body.tag)
    return Response(status_code=204)


@router.delete("/{id}/tags/{tag}", status_code=204, responses=responses(404), operation_id="removeHostTag")
async def remove_tag(id: str, tag: str = Path(pattern=TAG_PATTERN), principal: Principal = Auth,
                     db: AsyncSession = Db) -> Response:
    await service.remove_tag(db, principal, id, tag)
    return Response(status_code=204)
