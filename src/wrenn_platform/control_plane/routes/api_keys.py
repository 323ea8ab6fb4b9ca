"""`/v1/api-keys`: keys of the session's current team. The plaintext is shown once, at creation.

Any member may create, list and delete the team's keys (the contract names no role). A key of
another team answers 404, exactly like a key that does not exist.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ...wire.api.api_keys import APIKeyResponse, CreateAPIKeyRequest
from ..db.models import ApiKey
from ..deps import get_db
from ..errors import not_found, responses
from ..permissions import IdPath, TeamAccess, session_team_access
from ..security import new_api_key, sha256_hex

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])


def _body(key: ApiKey, plaintext: str | None = None) -> APIKeyResponse:
    return APIKeyResponse(
        id=key.id,
        team_id=key.team_id,
        name=key.name,
        key_prefix=key.key_prefix,
        created_at=key.created_at,
        last_used=key.last_used,
        key=plaintext,
    )


@router.post("", status_code=201, response_model=APIKeyResponse, operation_id="createAPIKey",
             responses=responses(401))
async def create_api_key(
    body: CreateAPIKeyRequest,
    access: TeamAccess = Depends(session_team_access),
    db: AsyncSession = Depends(get_db),
) -> APIKeyResponse:
    plaintext, prefix = new_api_key()
    key = ApiKey(
        team_id=access.team.id,
        created_by=access.user_id,
        name=body.name,
        key_hash=sha256_hex(plaintext),
        key_prefix=prefix,
    )
    db.add(key)
    await db.commit()
    return _body(key, plaintext)


@router.get("", response_model=list[APIKeyResponse], operation_id="listAPIKeys")
async def list_api_keys(
    access: TeamAccess = Depends(session_team_access), db: AsyncSession = Depends(get_db)
) -> list[APIKeyResponse]:
    keys = await db.scalars(
        select(ApiKey).where(ApiKey.team_id == access.team.id).order_by(ApiKey.created_at, ApiKey.id)
    )
    return [_body(key) for key in keys.all()]


@router.delete("/{id}", status_code=204, operation_id="deleteAPIKey")
async def delete_api_key(
    key_id: IdPath,
    access: TeamAccess = Depends(session_team_access),
    db: AsyncSession = Depends(get_db),
) -> None:
    result = await db.execute(delete(ApiKey).where(ApiKey.id == key_id, ApiKey.team_id == access.team.id))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise not_found("API key not found")
    await db.commit()
