"""Signup, activation, login, logout and team switching (`/v1/auth/*`, tag auth)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ...wire.api.auth import (
    ActivateRequest,
    LoginRequest,
    SessionResponse,
    SignupRequest,
    SignupResponse,
    SwitchTeamRequest,
)
from .. import console, errors
from ..auth import tokens
from ..auth.accounts import create_user, login_team
from ..auth.cookies import clear_session_cookies
from ..auth.links import public_base
from ..auth.login_limits import LoginLimits
from ..auth.principal import Principal, require_session
from ..auth.sessions import client_ip, revoke_user_sessions, rotate_session, start_session
from ..db.models import OneTimeToken, Team, TeamMember, User
from ..db.types import utcnow
from ..deps import get_db, get_settings
from ..errors import ApiError, conflict, forbidden, not_found
from ..mail import messages
from ..mail.mailer import Mailer, MailError
from ..security import hash_password_off_loop, sha256_hex, verify_password_off_loop
from ..settings import Settings

router = APIRouter(tags=["auth"])


def _session_response(user: User, team_id: str, role: str) -> SessionResponse:
    return SessionResponse(
        user_id=user.id, team_id=team_id, email=user.email, name=user.name, role=role, is_admin=user.is_admin
    )


async def _user_by_email(db: AsyncSession, email: str) -> User | None:
    return (await db.execute(select(User).where(User.email == email.lower()))).scalar_one_or_none()


@router.post(
    "/v1/auth/signup", operation_id="signup", status_code=201, response_model=SignupResponse,
    responses=errors.responses(400, 409),
)
async def signup(
    body: SignupRequest,
    request: Request,
    db: AsyncSession = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> SignupResponse:
    user = await _user_by_email(db, body.email)
    if user is not None:
        if user.is_active or user.activated_at is not None or user.deleted_at is not None:
            raise conflict("email already registered", "email_taken")
        last = await tokens.last_issued_at(db, tokens.ACTIVATION, user.id)
        if last is not None and utcnow() - last < timedelta(seconds=settings.signup_cooldown_seconds):
            raise conflict("an activation email was sent recently; try again later", "signup_cooldown")
        # Not activated yet: the newest signup wins, and older activation links stop working.
        user.name, user.password_hash = body.name, await hash_password_off_loop(body.password)
        await tokens.retire(db, tokens.ACTIVATION, user.id)
    else:
        password_hash = await hash_password_off_loop(body.password)
        user = await create_user(db, email=body.email, name=body.name, password_hash=password_hash, active=False)
    raw = await tokens.issue(db, tokens.ACTIVATION, settings.activation_ttl_seconds, user_id=user.id)
    try:
        await db.commit()
    except IntegrityError:  # a concurrent signup for the same address won
        raise conflict("email already registered", "email_taken") from None
    url = messages.link(public_base(request, settings), messages.ACTIVATE_PATH, raw)
    subject, text = messages.activation(user.name, url, settings.activation_ttl_seconds // 60)
    mailer: Mailer = request.app.state.mailer
    try:
        await mailer.send(user.email, subject, text, link=url)
    except MailError:
        # Without the email the link is useless: drop it so that a retry is not held by the cooldown.
        await db.execute(delete(OneTimeToken).where(OneTimeToken.token_hash == sha256_hex(raw)))
        await db.commit()
        raise ApiError(503, "unavailable", "could not send the activation email; try again later") from None
    return SignupResponse(message="Account created. Check your email for the activation link.")


@router.get(messages.ACTIVATE_PATH, include_in_schema=False)
async def activate_page() -> FileResponse:
    """The console; it sees its path and posts the link's token to `/v1/auth/activate`."""
    return console.index_response()


@router.post(
    "/v1/auth/activate", operation_id="activate", response_model=SessionResponse, responses=errors.responses(400)
)
async def activate(
    body: ActivateRequest,
    request: Request,
    response: Response,
    db: AsyncSession = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> SessionResponse:
    token = await tokens.consume(db, tokens.ACTIVATION, body.token)
    user = await db.get(User, token.user_id) if token is not None and token.user_id else None
    deactivated = user is not None and user.activated_at is not None and not user.is_active
    if user is None or user.deleted_at is not None or deactivated:
        await db.rollback()
        raise errors.bad_request("invalid or expired activation token", "invalid_token")
    user.is_active = True
    user.activated_at = user.activated_at or utcnow()
    await db.commit()
    team_id, role = await login_team(db, user)
    await start_session(db, request, response, settings, user.id, team_id)
    return _session_response(user, team_id, role)


@router.post("/v1/auth/login", operation_id="login", response_model=SessionResponse, responses=errors.responses(401))
async def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    db: AsyncSession = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> SessionResponse:
    limits: LoginLimits = request.app.state.login_limits
    ip = client_ip(request, settings)
    await limits.check(body.email, ip)
    user = await _user_by_email(db, body.email)
    password_ok = await verify_password_off_loop(user.password_hash if user else None, body.password)
    if user is None or not password_ok or not user.is_active or user.deleted_at is not None:
        await limits.failed(body.email, ip)
        raise ApiError(401, "invalid_credentials", "invalid email or password")
    await limits.succeeded(body.email)
    team_id, role = await login_team(db, user)
    await start_session(db, request, response, settings, user.id, team_id)
    return _session_response(user, team_id, role)


@router.post("/v1/auth/logout", operation_id="logout", status_code=204, responses=errors.responses(401, 403))
async def logout(
    request: Request,
    principal: Principal = Depends(require_session),
    db: AsyncSession = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> Response:
    assert principal.user_id is not None and principal.session_id is not None
    await revoke_user_sessions(request.app, db, principal.user_id, [principal.session_id])
    response = Response(status_code=204)
    clear_session_cookies(response, settings)
    return response


@router.post("/v1/auth/logout-all", operation_id="logoutAll", status_code=204, responses=errors.responses(401, 403))
async def logout_all(
    request: Request,
    principal: Principal = Depends(require_session),
    db: AsyncSession = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> Response:
    assert principal.user_id is not None
    await revoke_user_sessions(request.app, db, principal.user_id)
    response = Response(status_code=204)
    clear_session_cookies(response, settings)
    return response


@router.post(
    "/v1/auth/switch-team", operation_id="switchTeam", response_model=SessionResponse,
    responses=errors.responses(403, 404),
)
async def switch_team(
    body: SwitchTeamRequest,
    request: Request,
    response: Response,
    principal: Principal = Depends(require_session),
    db: AsyncSession = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> SessionResponse:
    assert principal.user_id is not None and principal.session_id is not None
    team = await db.get(Team, body.team_id)
    if team is None or team.deleted_at is not None:
        raise not_found("team not found")
    role = (
        await db.execute(
            select(TeamMember.role).where(TeamMember.team_id == team.id, TeamMember.user_id == principal.user_id)
        )
    ).scalar_one_or_none()
    if role is None:
        raise forbidden("not a member of this team")
    await rotate_session(request.app, db, response, settings, principal.session_id, team.id)
    user = await db.get(User, principal.user_id)
    assert user is not None
    return _session_response(user, team.id, role)
