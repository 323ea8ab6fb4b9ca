"""`/v1/events/stream` (the caller's team; API key or session) and `/v1/admin/events/stream`
(every team; platform admins): Server-Sent Events, see `events/sse.py`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ...wire.api.events import SSEEvent
from ..auth.principal import Principal, require_admin, require_key_or_session
from ..db.models import ApiKey, AuthSession, Team, TeamMember, User
from ..db.types import utcnow
from ..deps import get_db
from ..errors import responses, unauthorized
from ..events import sse

router = APIRouter(tags=["events"])

_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_SSE_SCHEMA = {"schema": {"$ref": "#/components/schemas/SSEEvent"}}
_SSE_BODY = {"responses": {"200": {"content": {"text/event-stream": _SSE_SCHEMA}}}}


def _json_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Error answers are JSON even on a stream route (whose own media type is `text/event-stream`)."""
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    return {status: {"description": entry["description"], "content": {"application/json": {"schema": ref}}}
            for status, entry in responses(*statuses).items()}


class EventStreamResponse(StreamingResponse):
    """Declares `text/event-stream` (with `SSEEvent` as its schema) as the route's only success body."""

    media_type = "text/event-stream"


def _authorization_check(
    sessionmaker: async_sessionmaker[AsyncSession], principal: Principal, admin: bool
) -> Callable[[], Awaitable[bool]]:
    """Whether the stream's caller may still read it: a stream outlives the request that opened it,
    so a revoked session or key, a removed member or a demoted admin must stop receiving events."""

    async def check() -> bool:
        async with sessionmaker() as db:
            if principal.kind == "api_key":
                key = await db.execute(
                    select(ApiKey.id).join(Team, Team.id == ApiKey.team_id)
                    .where(ApiKey.id == principal.api_key_id, Team.deleted_at.is_(None))
                )
                return key.first() is not None
            row = (await db.execute(
                select(AuthSession, User).join(User, User.id == AuthSession.user_id)
                .where(AuthSession.id == principal.session_id)
            )).first()
            if row is None:
                return False
            session, user = row
            if (session.revoked_at is not None or session.expires_at <= utcnow() or not user.is_active
                    or user.deleted_at is not None):
                return False
            if admin:
                return user.is_admin
            member = await db.execute(
                select(TeamMember.role).where(TeamMember.team_id == principal.team_id, TeamMember.user_id == user.id)
            )
            return member.first() is not None

    return check


async def _open(request: Request, db: AsyncSession, principal: Principal, team_id: str | None) -> EventStreamResponse:
    await db.close()  # a stream may last hours: give the connection back to the pool now
    app = request.app
    last = sse.parse_last_event_id(request.headers.get("last-event-id"))
    authorized = _authorization_check(app.state.sessionmaker, principal, admin=team_id is None)
    body = sse.stream(app.state.event_hub, app.state.sessionmaker, app.state.settings, team_id, last, authorized)
    return EventStreamResponse(body, headers=_HEADERS)


@router.get("/v1/events/stream", operation_id="streamEvents", response_model=SSEEvent,
            response_class=EventStreamResponse, response_description="SSE stream opened", responses=_json_errors(401),
            openapi_extra=_SSE_BODY)
async def stream_events(request: Request, principal: Principal = Depends(require_key_or_session),
                        db: AsyncSession = Depends(get_db)) -> EventStreamResponse:
    if principal.kind == "session" and principal.role is None:
        raise unauthorized("not a member of this team")
    return await _open(request, db, principal, principal.team_id)


@router.get("/v1/admin/events/stream", operation_id="adminStreamEvents", response_model=SSEEvent,
            response_class=EventStreamResponse, response_description="SSE stream opened", tags=["admin"],
            responses=_json_errors(401, 403), openapi_extra=_SSE_BODY)
async def admin_stream_events(request: Request, principal: Principal = Depends(require_admin),
                              db: AsyncSession = Depends(get_db)) -> EventStreamResponse:
    return await _open(request, db, principal, None)
