"""Host models of the 0.2.0 contract needed by the host join flow (register, refresh, heartbeat, events)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class Host(BaseModel):
    id: str
    type: Literal["regular", "byoc"]
    team_id: str | None = None
    provider: str | None = None
    availability_zone: str | None = None
    arch: str | None = None
    cpu_cores: int | None = None
    memory_mb: int | None = None
    disk_gb: int | None = None
    address: str | None = None
    status: Literal["pending", "online", "offline", "draining", "unreachable"]
    last_heartbeat_at: datetime | None = None
    created_by: str
    created_at: datetime
    updated_at: datetime


class RegisterHostRequest(BaseModel):
    token: str = Field(..., min_length=1)
    arch: str | None = Field(None, max_length=32)
    # Bounded so a hostile value is a 400, not an integer overflow in the database.
    cpu_cores: int | None = Field(None, ge=0, le=1 << 20)
    memory_mb: int | None = Field(None, ge=0, le=1 << 40)
    disk_gb: int | None = Field(None, ge=0, le=1 << 40)
    address: str = Field(..., min_length=1, max_length=255)


class RegisterHostResponse(BaseModel):
    host: Host
    token: str
    refresh_token: str


class RefreshHostTokenRequest(BaseModel):
    refresh_token: str = Field(..., min_length=1)


class RefreshHostTokenResponse(BaseModel):
    host: Host
    token: str
    refresh_token: str


class SandboxEventRequest(BaseModel):
    event: str = Field(..., min_length=1, max_length=64)
    sandbox_id: str = Field(..., min_length=1, max_length=64)
    host_id: str = Field(..., min_length=1, max_length=64)
    timestamp: int | None = None
