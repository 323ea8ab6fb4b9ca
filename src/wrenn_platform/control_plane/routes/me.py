"""The caller's own account (`/v1/me*`, tags account and me): profile, password, sessions, providers."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Path, Request, Response
from fastapi.responses import FileResponse
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ...wire.api.me import (
    ChangePasswordRequest,
    DeleteAccountRequest,
    MeResponse,
    PasswordResetConfirmRequest,
    PasswordResetRequest,
    SessionInfo,
    SessionsResponse,
    UpdateNameRequest,
)
from .. import console, errors
from ..auth import tokens
from ..auth.accounts import owns_shared_team, providers_of
from ..auth.cookies import clear_session_cookies
from ..auth.links import public_base
from ..auth.login_limits import LoginLimits
from ..auth.principal import Principal, require_session
from ..auth.sessions import client_ip, invalidate_user, revoke_user_sessions
from ..db.models import AuthSession, OAuthIdentity, Team, TeamMember, User
from ..db.types import utcnow
from ..deps import get_db, get_settings
from ..errors import ApiError, bad_request, conflict, forbidden, not_found
from ..mail import messages
from ..mail.mailer import Mailer
from ..security import hash_password_off_loop, verify_password_off_loop
from ..settings import Settings
from ..teams_lifecycle import delete_member_keys, mark_team_deleted

log = logging.getLogger(__name__)
router = APIRouter()
SessionId = Annotated[str, Path(min_length=1, max_length=64)]
ProviderName = Annotated[str, Path(min_length=1, max_length=32, description="OAuth provider name")]


async def _current_user(db: AsyncSession, principal: Principal) -> User:
    user = await db.get(User, principal.user_id) if principal.user_id else None
    if user is None:
        raise errors.unauthorized()
    return user


def _signed_out(settings: Settings) -> Response:
    response = Response(status_code=204)
    clear_session_cookies(response, settings)
    return response


@router.get("/v1/me", operation_id="getMe", tags=["account"], response_model=MeResponse)
async def get_me(principal: Principal = Depends(require_session), db: AsyncSession = Depends(get_db)) -> MeResponse:
    user = await _current_user(db, principal)
    providers = await providers_of(db, user.id)
    return MeResponse(name=user.name, email=user.email, has_password=bool(user.password_hash), providers=providers)


@router.patch("/v1/me", operation_id="updateName", tags=["account"], status_code=204, responses=errors.responses(400))
async def update_name(
    body: UpdateNameRequest,
    request: Request,
    principal: Principal = Depends(require_session),
    db: AsyncSession = Depends(get_db),
) -> Response:
    user = await _current_user(db, principal)
    user.name = body.name
    await db.commit()
    await invalidate_user(request.app, user.id)  # cached sessions carry the display name
    return Response(status_code=204)


@router.delete(
    "/v1/me", operation_id="deleteAccount", tags=["account"], status_code=204, responses=errors.responses(400, 409)
)
async def delete_account(
    body: DeleteAccountRequest,
    request: Request,
    principal: Principal = Depends(require_session),
    db: AsyncSession = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> Response:
    user = await _current_user(db, principal)
    if body.confirmation.strip().lower() != user.email:
        raise bad_request("confirmation: does not match your email address", "confirmation_mismatch")
    if await owns_shared_team(db, user.id):
        raise conflict("you own a team that has other members; transfer or delete it first", "owns_shared_team")
    now = utcnow()
    owned = select(TeamMember.team_id).where(TeamMember.user_id == user.id, TeamMember.role == "owner")
    for team in (await db.scalars(select(Team).where(Team.id.in_(owned), Team.deleted_at.is_(None)))).all():
        await mark_team_deleted(db, team)  # the same delete as DELETE /v1/teams: capsules go too
    await db.execute(delete(TeamMember).where(TeamMember.user_id == user.id, TeamMember.role != "owner"))
    await delete_member_keys(db, user.id)
    user.deleted_at = now
    user.is_active = False
    await tokens.retire(db, tokens.ACTIVATION, user.id)
    await tokens.retire(db, tokens.PASSWORD_RESET, user.id)
    await db.commit()
    await revoke_user_sessions(request.app, db, user.id)
    return _signed_out(settings)


@router.post(
    "/v1/me/password", operation_id="changePassword", tags=["account"], status_code=204,
    responses=errors.responses(400, 401),
)
async def change_password(
    body: ChangePasswordRequest,
    request: Request,
    principal: Principal = Depends(require_session),
    db: AsyncSession = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> Response:
    user = await _current_user(db, principal)
    if user.password_hash:
        if not body.current_password:
            raise bad_request("current_password: required to change an existing password")
        limits: LoginLimits = request.app.state.login_limits
        ip = client_ip(request, settings)
        await limits.check(user.email, ip)
        if not await verify_password_off_loop(user.password_hash, body.current_password):
            await limits.failed(user.email, ip)
            raise ApiError(401, "invalid_credentials", "current password is incorrect")
    elif body.confirm_password is None:
        raise bad_request("confirm_password: required when adding a password")
    if body.confirm_password is not None and body.confirm_password != body.new_password:
        raise bad_request("confirm_password: does not match new_password")
    user.password_hash = await hash_password_off_loop(body.new_password)
    await tokens.retire(db, tokens.PASSWORD_RESET, user.id)
    await db.commit()
    await revoke_user_sessions(request.app, db, user.id)
    return _signed_out(settings)


async def _send_reset(app: FastAPI, email: str, base_url: str) -> None:
    settings: Settings = app.state.settings
    try:
        async with app.state.sessionmaker() as db:
            user = (await db.execute(select(User).where(User.email == email))).scalar_one_or_none()
            if user is None or not user.is_active or user.deleted_at is not None:
                return
            last = await tokens.last_issued_at(db, tokens.PASSWORD_RESET, user.id)
            if last is not None and utcnow() - last < timedelta(seconds=settings.signup_cooldown_seconds):
                return  # one email per cooldown, so the form cannot be used to flood an inbox
            raw = await tokens.issue(db, tokens.PASSWORD_RESET, settings.password_reset_ttl_seconds, user_id=user.id)
            await db.commit()
        url = messages.link(base_url, messages.RESET_PATH, raw)
        subject, text = messages.password_reset(user.name, url, settings.password_reset_ttl_seconds // 60)
        mailer: Mailer = app.state.mailer
        await mailer.send(user.email, subject, text, link=url)
    except Exception:
        log.exception("sending a password reset email failed")


@router.post("/v1/me/password/reset", operation_id="requestPasswordReset", tags=["account"], status_code=204)
async def request_password_reset(
    body: PasswordResetRequest,
    request: Request,
    background: BackgroundTasks,
    settings: Settings = Depends(get_settings),
) -> Response:
    # The lookup and the email happen after the response, so neither its body nor its timing
    # tells whether the address has an account.
    background.add_task(_send_reset, request.app, body.email, public_base(request, settings))
    return Response(status_code=204, background=background)


@router.get(messages.RESET_PATH, include_in_schema=False)
async def reset_page() -> FileResponse:
    """The console; it sees its path and posts the link's token with the new password."""
    return console.index_response()


@router.post(
    "/v1/me/password/reset/confirm", operation_id="confirmPasswordReset", tags=["account"], status_code=204,
    responses=errors.responses(400),
)
async def confirm_password_reset(
    body: PasswordResetConfirmRequest,
    request: Request,
    db: AsyncSession = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> Response:
    token = await tokens.consume(db, tokens.PASSWORD_RESET, body.token)
    user = await db.get(User, token.user_id) if token is not None and token.user_id else None
    if user is None or not user.is_active or user.deleted_at is not None:
        await db.rollback()
        raise bad_request("invalid or expired reset token", "invalid_token")
    user.password_hash = await hash_password_off_loop(body.new_password)
    await tokens.retire(db, tokens.PASSWORD_RESET, user.id)
    await db.commit()
    await revoke_user_sessions(request.app, db, user.id)
    return _signed_out(settings)


@router.get(
    "/v1/me/sessions", operation_id="listSessions", tags=["me"], response_model=SessionsResponse,
    responses=errors.responses(401),
)
async def list_sessions(
    principal: Principal = Depends(require_session),
    db: AsyncSession = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> SessionsResponse:
    now = utcnow()
    rows = (
        await db.execute(
            select(AuthSession)
            .where(
                AuthSession.user_id == principal.user_id,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > now,
                AuthSession.last_seen_at > now - timedelta(seconds=settings.session_idle_seconds),
            )
            .order_by(AuthSession.created_at.desc(), AuthSession.id)
        )
    ).scalars()
    return SessionsResponse(
        sessions=[
            SessionInfo(
                id=s.id, user_agent=s.user_agent, ip_address=s.ip_address, created_at=s.created_at,
                last_seen_at=s.last_seen_at, expires_at=s.expires_at, current=s.id == principal.session_id,
            )
            for s in rows
        ]
    )


@router.delete(
    "/v1/me/sessions/{id}", operation_id="revokeSession", tags=["me"], status_code=204,
    responses=errors.responses(401, 403),
)
async def revoke_session(
    id: SessionId,
    request: Request,
    principal: Principal = Depends(require_session),
    db: AsyncSession = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> Response:
    assert principal.user_id is not None
    # Someone else's session and a session that does not exist answer alike: nothing leaks.
    if not await revoke_user_sessions(request.app, db, principal.user_id, [id]):
        raise forbidden("no such session of yours")
    return _signed_out(settings) if id == principal.session_id else Response(status_code=204)


@router.delete(
    "/v1/me/providers/{provider}", operation_id="disconnectProvider", tags=["account"], status_code=204,
    responses=errors.responses(400, 404),
)
async def disconnect_provider(
    provider: ProviderName,
    principal: Principal = Depends(require_session),
    db: AsyncSession = Depends(get_db),
) -> Response:
    user = await _current_user(db, principal)
    identity = (
        await db.execute(
            select(OAuthIdentity).where(OAuthIdentity.user_id == user.id, OAuthIdentity.provider == provider)
        )
    ).scalar_one_or_none()
    if identity is None:
        raise not_found("provider not connected")
    identities = (
        await db.execute(select(func.count()).select_from(OAuthIdentity).where(OAuthIdentity.user_id == user.id))
    ).scalar_one()
    if not user.password_hash and identities <= 1:
        raise bad_request("cannot disconnect your last login method; set a password first", "last_login_method")
    await db.delete(identity)
    await db.commit()
    return Response(status_code=204)
