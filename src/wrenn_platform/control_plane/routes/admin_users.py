"""`/v1/admin/users*`: list users, activate/deactivate, grant/revoke platform admin.

The platform keeps at least one active admin: revoking or deactivating the last one is a 400.
Deactivation revokes the user's sessions at once; the admin flag is read from the database on
every request, so granting or revoking it applies to the user's next request.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ...wire.api.admin import AdminUser, SetUserActiveRequest, SetUserAdminRequest
from ..auth.principal import Principal, require_admin
from ..auth.sessions import invalidate_user, revoke_user_sessions
from ..db.models import User
from ..deps import get_db
from ..errors import bad_request, not_found, responses
from ..permissions import IdPath

router = APIRouter(prefix="/v1/admin/users", tags=["admin"])


async def _user(db: AsyncSession, user_id: str) -> User:
    user = await db.get(User, user_id)
    if user is None or user.deleted_at is not None:
        raise not_found("user not found")
    return user


async def _refuse_last_admin(db: AsyncSession, user: User) -> None:
    """Raise if `user` is the only active admin. Locks the admin rows so two requests cannot
    each remove one of the last two admins (PostgreSQL; SQLite serialises writers anyway)."""
    admins = (
        await db.scalars(
            select(User.id)
            .where(User.is_admin.is_(True), User.is_active.is_(True), User.deleted_at.is_(None))
            .with_for_update()
        )
    ).all()
    if user.is_admin and user.is_active and list(admins) == [user.id]:
        raise bad_request("cannot remove the last platform admin", code="last_admin")


@router.get("", response_model=list[AdminUser], operation_id="adminListUsers")
async def list_users(_: Principal = Depends(require_admin), db: AsyncSession = Depends(get_db)) -> list[AdminUser]:
    users = await db.scalars(select(User).order_by(User.created_at, User.id))
    return [
        AdminUser(
            id=u.id,
            email=u.email,
            name=u.name,
            is_active=u.is_active,
            is_admin=u.is_admin,
            created_at=u.created_at,
            deleted_at=u.deleted_at,
        )
        for u in users.all()
    ]


@router.put("/{id}/active", status_code=204, operation_id="adminSetUserActive")
async def set_user_active(
    request: Request,
    user_id: IdPath,
    body: SetUserActiveRequest,
    _: Principal = Depends(require_admin),
    db: AsyncSession = Depends(get_db),
) -> None:
    user = await _user(db, user_id)
    if not body.active:
        await _refuse_last_admin(db, user)
    user.is_active = body.active
    await db.commit()
    if body.active:
        await invalidate_user(request.app, user.id)
    else:
        await revoke_user_sessions(request.app, db, user.id)


@router.put("/{id}/admin", status_code=204, operation_id="setUserAdmin", responses=responses(400, 403, 404))
async def set_user_admin(
    request: Request,
    user_id: IdPath,
    body: SetUserAdminRequest,
    _: Principal = Depends(require_admin),
    db: AsyncSession = Depends(get_db),
) -> None:
    user = await _user(db, user_id)
    if not body.admin:
        await _refuse_last_admin(db, user)
    user.is_admin = body.admin
    await db.commit()
    await invalidate_user(request.app, user.id)
