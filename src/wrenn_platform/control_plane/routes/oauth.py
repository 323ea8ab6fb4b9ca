"""OAuth login (`/auth/oauth/{provider}`, its callback) and linking (`/v1/me/providers/{provider}/connect`).

The `state` is a single-use token stored hashed (purpose `oauth_state`) and bound to the browser
by the `wrenn_oauth_state` cookie (SameSite=Lax: it must come back on the provider's cross-site
redirect, which a Strict cookie would not). The state's data says whether the flow logs in or links
to the account that started it. A GitHub identity never seen before creates a new active account,
unless its email already belongs to an account: then the callback answers `email_taken` rather
than linking, because only the account's owner may link (log in, then connect).
"""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ...wire.api.me import AuthUrlResponse
from .. import errors
from ..auth import tokens
from ..auth.accounts import create_user, login_team
from ..auth.github import ExchangeFailed, GitHub, Profile
from ..auth.links import public_base, spa_base
from ..auth.principal import Principal, require_session
from ..auth.sessions import start_session
from ..db.models import OAuthIdentity, User
from ..deps import get_db, get_settings
from ..errors import not_found
from ..security import equal
from ..settings import Settings

log = logging.getLogger(__name__)
router = APIRouter()
STATE_COOKIE = "wrenn_oauth_state"
STATE_COOKIE_PATH = "/auth/oauth"
ProviderName = Annotated[str, Path(min_length=1, max_length=32, description="OAuth provider name")]


class OAuthError(Exception):
    """Ends the callback with a redirect carrying `?error=<code>`."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _provider(name: str, settings: Settings) -> GitHub:
    if name != GitHub.name or not GitHub(settings).configured:
        raise not_found("provider not found or not configured")
    return GitHub(settings)


def _callback_uri(request: Request, settings: Settings, provider: str) -> str:
    return f"{public_base(request, settings)}/auth/oauth/{provider}/callback"


async def _begin(
    request: Request, response: Response, db: AsyncSession, settings: Settings, provider: GitHub, data: dict[str, str]
) -> str:
    state = await tokens.issue(db, tokens.OAUTH_STATE, settings.oauth_state_ttl_seconds, data=data)
    await db.commit()
    response.set_cookie(
        STATE_COOKIE, state, max_age=settings.oauth_state_ttl_seconds, path=STATE_COOKIE_PATH,
        secure=settings.secure_cookies, httponly=True, samesite="lax",
    )
    return provider.authorize_url(state, _callback_uri(request, settings, provider.name))


@router.get(
    "/auth/oauth/{provider}", operation_id="oauthRedirect", tags=["auth"], status_code=302,
    response_class=RedirectResponse, responses=errors.responses(404),
)
async def oauth_redirect(
    provider: ProviderName,
    request: Request,
    db: AsyncSession = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> RedirectResponse:
    github = _provider(provider, settings)
    response = RedirectResponse("", status_code=302)
    response.headers["location"] = await _begin(request, response, db, settings, github, {"mode": "login"})
    return response


@router.get(
    "/v1/me/providers/{provider}/connect", operation_id="connectProvider", tags=["account"],
    response_model=AuthUrlResponse, responses=errors.responses(404),
)
async def connect_provider(
    provider: ProviderName,
    request: Request,
    response: Response,
    principal: Principal = Depends(require_session),
    db: AsyncSession = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> AuthUrlResponse:
    github = _provider(provider, settings)
    assert principal.user_id is not None
    data = {"mode": "connect", "user_id": principal.user_id}
    return AuthUrlResponse(auth_url=await _begin(request, response, db, settings, github, data))


@router.get("/auth/oauth/{provider}/callback", operation_id="oauthCallback", tags=["auth"], status_code=302,
            response_class=RedirectResponse)
async def oauth_callback(
    provider: ProviderName,
    request: Request,
    code: Annotated[str | None, Query(max_length=512)] = None,
    state: Annotated[str | None, Query(max_length=256)] = None,
    db: AsyncSession = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> RedirectResponse:
    target = f"{spa_base(request, settings)}/auth/{provider}/callback"
    response = RedirectResponse(target, status_code=302)
    try:
        github = _provider(provider, settings)
        data = await _check_state(request, db, state)
        if request.query_params.get("error"):  # the provider's own (e.g. the user said no); not in the contract
            raise OAuthError("access_denied")
        if not code:
            raise OAuthError("missing_code")
        try:
            profile = await github.profile(code, _callback_uri(request, settings, provider))
        except ExchangeFailed as exc:
            log.warning("OAuth exchange with %s failed: %s", provider, exc)
            raise OAuthError("exchange_failed") from exc
        if data.get("mode") == "connect":
            await _connect(db, provider, profile, data.get("user_id", ""))
        else:
            user = await _login_user(db, provider, profile)
            team_id, _ = await login_team(db, user)
            await start_session(db, request, response, settings, user.id, team_id)
    except errors.ApiError:
        response = RedirectResponse(f"{target}?{urlencode({'error': 'access_denied'})}", status_code=302)
    except OAuthError as exc:
        await db.rollback()
        response = RedirectResponse(f"{target}?{urlencode({'error': exc.code})}", status_code=302)
    except Exception:
        log.exception("OAuth callback failed")
        await db.rollback()
        response = RedirectResponse(f"{target}?{urlencode({'error': 'internal_error'})}", status_code=302)
    response.delete_cookie(STATE_COOKIE, path=STATE_COOKIE_PATH, secure=settings.secure_cookies, httponly=True,
                           samesite="lax")
    return response


async def _check_state(request: Request, db: AsyncSession, state: str | None) -> dict[str, str]:
    cookie = request.cookies.get(STATE_COOKIE, "")
    if not state or not cookie or not equal(state, cookie):
        raise OAuthError("invalid_state")
    token = await tokens.consume(db, tokens.OAUTH_STATE, state)
    if token is None:
        raise OAuthError("invalid_state")
    await db.commit()
    return {k: str(v) for k, v in tokens.data_of(token).items()}


async def _identity(db: AsyncSession, provider: str, profile: Profile) -> OAuthIdentity | None:
    return (
        await db.execute(
            select(OAuthIdentity).where(
                OAuthIdentity.provider == provider, OAuthIdentity.provider_user_id == profile.provider_user_id
            )
        )
    ).scalar_one_or_none()


async def _login_user(db: AsyncSession, provider: str, profile: Profile) -> User:
    identity = await _identity(db, provider, profile)
    if identity is not None:
        user = await db.get(User, identity.user_id)
        if user is None or not user.is_active or user.deleted_at is not None:
            raise OAuthError("access_denied")
        return user
    if not profile.verified_email:
        raise OAuthError("access_denied")  # an account needs an email we know the person owns
    taken = (await db.execute(select(User.id).where(User.email == profile.verified_email))).first()
    if taken is not None:
        raise OAuthError("email_taken")
    user = await create_user(
        db, email=profile.verified_email, name=profile.name or profile.login, password_hash=None, active=True
    )
    db.add(OAuthIdentity(user_id=user.id, provider=provider, provider_user_id=profile.provider_user_id,
                         email=profile.verified_email))
    try:
        await db.commit()
    except IntegrityError:  # a concurrent callback created it first
        raise OAuthError("email_taken") from None
    return user


async def _connect(db: AsyncSession, provider: str, profile: Profile, user_id: str) -> None:
    user = await db.get(User, user_id) if user_id else None
    if user is None or not user.is_active or user.deleted_at is not None:
        raise OAuthError("access_denied")
    identity = await _identity(db, provider, profile)
    if identity is not None:
        if identity.user_id != user.id:
            raise OAuthError("email_taken")  # this provider account already signs in to another account
        return
    existing = (
        await db.execute(
            select(OAuthIdentity.id).where(OAuthIdentity.user_id == user.id, OAuthIdentity.provider == provider)
        )
    ).first()
    if existing is not None:
        raise OAuthError("access_denied")  # another account of this provider is linked already
    db.add(OAuthIdentity(user_id=user.id, provider=provider, provider_user_id=profile.provider_user_id,
                         email=profile.verified_email or ""))
    try:
        await db.commit()
    except IntegrityError:
        raise OAuthError("email_taken") from None

