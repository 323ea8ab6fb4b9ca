"""`/v1/admin/users*`: list users, activate/deactivate, grant/revoke platform admin.

The platform keeps at least one active admin: revoking or deactivating the last one is a 400.
Deactivation revokes the user's sessions at once; the admin flag is read from the database on
every request, so granting or revoking it applies to the user's next request.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

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


async def _withdraw(db: AsyncSession, user: User, **values: bool) -> None:
    """Set `is_admin` or `is_active` to False unless that leaves no active admin (400).

    Race-free on both databases: PostgreSQL locks the admin rows first, so concurrent removals
    queue and the later one sees the earlier; the update itself only applies while another
    active admin exists, which one SQLite write statement checks atomically.
    """
    live_admin = (User.is_admin.is_(True), User.is_active.is_(True), User.deleted_at.is_(None))
    await db.execute(select(User.id).where(*live_admin).with_for_update())
    other = aliased(User)
    others = (
        select(func.count())
        .select_from(other)
        .where(other.id != user.id, other.is_admin.is_(True), other.is_active.is_(True), other.deleted_at.is_(None))
        .scalar_subquery()
    )
    result = await db.execute(
        update(User)
        .where(User.id == user.id, or_(~and_(*live_admin), others > 0))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        await db.rollback()
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
    if body.active:
        user.is_active = True
    else:
        await _withdraw(db, user, is_active=False)
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
    if body.admin:
        user.is_admin = True
    else:
        await _withdraw(db, user, is_admin=False)
    await db.commit()
    await invalidate_user(request.app, user.id)
