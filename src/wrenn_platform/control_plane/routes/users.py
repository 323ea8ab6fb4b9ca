"""`/v1/users/search`: up to 10 users whose email starts with a prefix containing "@"."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ...wire.api.users import UserSearchResult
from ..auth.principal import Principal, require_session
from ..db.models import User
from ..deps import get_db
from ..errors import bad_request, responses

router = APIRouter(prefix="/v1/users", tags=["users"])
SEARCH_LIMIT = 10


@router.get("/search", response_model=list[UserSearchResult], operation_id="searchUsers", responses=responses(400))
async def search_users(
    email: str = Query(max_length=320, description='Email prefix (must contain "@", e.g. "alice@")'),
    _: Principal = Depends(require_session),
    db: AsyncSession = Depends(get_db),
) -> list[UserSearchResult]:
    prefix = email.strip().lower()
    # Requiring "@" keeps this from enumerating every account one letter at a time.
    if "@" not in prefix:
        raise bad_request('email: the prefix must contain "@"')
    users = await db.execute(
        select(User.id, User.email)
        .where(User.email.startswith(prefix, autoescape=True), User.deleted_at.is_(None))
        .order_by(User.email)
        .limit(SEARCH_LIMIT)
    )
    return [UserSearchResult(user_id=user_id, email=address) for user_id, address in users.all()]
