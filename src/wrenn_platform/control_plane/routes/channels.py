"""`/v1/channels*`: the session team's notification channels.

Configs are validated per provider (a 400 names the field), stored encrypted and never returned;
a webhook channel's secret (generated when not given) is returned once, when it is set: on
creation and on rotation. Any member may manage the team's channels (the contract names no role).
"""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Depends, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ...wire.api.channels import (
    ChannelResponse,
    CreateChannelRequest,
    RotateConfigRequest,
    TestChannelRequest,
    TestChannelResponse,
    UpdateChannelRequest,
)
from ..audit import record_audit
from ..channels.crypto import encrypt_config
from ..channels.messages import test_payload
from ..channels.providers import build, validate
from ..channels.sender import send
from ..db.models import Channel
from ..db.types import utcnow
from ..deps import get_db, get_settings
from ..errors import bad_request, not_found, responses
from ..permissions import IdPath, TeamAccess, session_team_access
from ..security import new_token
from ..settings import Settings

router = APIRouter(prefix="/v1/channels", tags=["channels"])


def _body(channel: Channel, secret: str | None = None) -> ChannelResponse:
    return ChannelResponse(id=channel.id, team_id=channel.team_id, name=channel.name,
                           provider=channel.provider, events=list(channel.events or []),
                           created_at=channel.created_at, updated_at=channel.updated_at, secret=secret)


async def _owned(db: AsyncSession, access: TeamAccess, channel_id: str) -> Channel:
    channel = await db.get(Channel, channel_id)
    if channel is None or channel.team_id != access.team.id:
        raise not_found("channel not found")
    return channel


async def _commit_named(db: AsyncSession, name: str) -> None:
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        raise bad_request(f"name: a channel named {name!r} already exists", code="already_exists") from None


@router.post("", status_code=201, response_model=ChannelResponse, operation_id="createChannel",
             responses=responses(400))
async def create_channel(body: CreateChannelRequest, access: TeamAccess = Depends(session_team_access),
                         db: AsyncSession = Depends(get_db),
                         settings: Settings = Depends(get_settings)) -> ChannelResponse:
    config = validate(body.provider, body.config, settings)
    channel = Channel(team_id=access.team.id, name=body.name, provider=body.provider,
                      events=sorted(set(body.events)), config_encrypted=encrypt_config(settings, config))
    db.add(channel)
    await _commit_named(db, body.name)
    return _body(channel, config.get("secret"))


@router.get("", response_model=list[ChannelResponse], operation_id="listChannels")
async def list_channels(access: TeamAccess = Depends(session_team_access),
                        db: AsyncSession = Depends(get_db)) -> list[ChannelResponse]:
    rows = await db.scalars(select(Channel).where(Channel.team_id == access.team.id)
                            .order_by(Channel.created_at, Channel.id))
    return [_body(c) for c in rows.all()]


@router.post("/test", response_model=TestChannelResponse, operation_id="testChannel", responses=responses(400))
async def test_channel(body: TestChannelRequest, access: TeamAccess = Depends(session_team_access),
                       db: AsyncSession = Depends(get_db),
                       settings: Settings = Depends(get_settings)) -> TestChannelResponse:
    config = validate(body.provider, body.config, settings)
    payload = test_payload(utcnow().isoformat().replace("+00:00", "Z"))
    request = build(body.provider, config, payload, f"wrenn-test-{new_token()[:16]}", settings)
    async with httpx.AsyncClient(follow_redirects=False) as client:
        result = await send(client, request, settings.channel_timeout_seconds,
                            allow_private=settings.channel_allow_private_destinations)
    record_audit(db, action="test", resource_type="channel", resource_id="", team_id=access.team.id,
                 status="success" if result.ok else "failure",
                 metadata={"provider": body.provider, "status_code": result.status_code})
    await db.commit()
    if not result.ok:
        raise bad_request(f"config: the {body.provider} endpoint refused the test notification ({result.error})",
                          code="delivery_failed")
    return TestChannelResponse(status="ok")


@router.get("/{id}", response_model=ChannelResponse, operation_id="getChannel", responses=responses(404))
async def get_channel(channel_id: IdPath, access: TeamAccess = Depends(session_team_access),
                      db: AsyncSession = Depends(get_db)) -> ChannelResponse:
    return _body(await _owned(db, access, channel_id))


@router.patch("/{id}", response_model=ChannelResponse, operation_id="updateChannel", responses=responses(400, 404))
async def update_channel(channel_id: IdPath, body: UpdateChannelRequest,
                         access: TeamAccess = Depends(session_team_access),
                         db: AsyncSession = Depends(get_db)) -> ChannelResponse:
    channel = await _owned(db, access, channel_id)
    channel.name = body.name
    channel.events = sorted(set(body.events))
    await _commit_named(db, body.name)
    return _body(channel)


@router.delete("/{id}", status_code=204, operation_id="deleteChannel")
async def delete_channel(channel_id: IdPath, access: TeamAccess = Depends(session_team_access),
                         db: AsyncSession = Depends(get_db)) -> Response:
    await db.delete(await _owned(db, access, channel_id))
    await db.commit()
    return Response(status_code=204)


@router.put("/{id}/config", response_model=ChannelResponse, operation_id="rotateChannelConfig",
            responses=responses(400, 404))
async def rotate_channel_config(channel_id: IdPath, body: RotateConfigRequest,
                                access: TeamAccess = Depends(session_team_access),
                                db: AsyncSession = Depends(get_db),
                                settings: Settings = Depends(get_settings)) -> ChannelResponse:
    channel = await _owned(db, access, channel_id)
    config = validate(channel.provider, body.config, settings)
    channel.config_encrypted = encrypt_config(settings, config)
    channel.updated_at = utcnow()
    await db.commit()
    return _body(channel, config.get("secret"))
