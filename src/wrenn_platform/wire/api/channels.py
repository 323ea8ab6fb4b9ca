"""Bodies of the `channels` routes (0.2.0 contract schemas: CreateChannelRequest, TestChannelRequest,
RotateConfigRequest, UpdateChannelRequest, ChannelResponse)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

Provider = Literal["discord", "slack", "teams", "googlechat", "telegram", "matrix", "webhook"]
ChannelEvent = Literal[
    "capsule.create", "capsule.pause", "capsule.resume", "capsule.destroy",
    "template.snapshot.create", "template.snapshot.delete", "host.up", "host.down",
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Config = Annotated[dict[str, Annotated[str, StringConstraints(max_length=2048)]], Field(max_length=16)]


class CreateChannelRequest(BaseModel):
    name: Name = Field(description="Unique channel name within the team.")
    provider: Provider
    config: Config = Field(description="Provider-specific configuration fields.")
    events: list[ChannelEvent]


class TestChannelRequest(BaseModel):
    provider: Provider
    config: Config


class RotateConfigRequest(BaseModel):
    config: Config


class UpdateChannelRequest(BaseModel):
    name: Name
    events: list[ChannelEvent]


class ChannelResponse(BaseModel):
    id: str
    team_id: str
    name: str
    provider: Provider
    events: list[str]
    created_at: datetime
    updated_at: datetime
    secret: str | None = Field(None, description="Webhook secret. Only returned on creation, never again.")


class TestChannelResponse(BaseModel):
    status: str = "ok"
