"""Bodies of the operator's hosts API (`/v1/hosts`, `/v1/hosts/{id}*` except the join flow)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from .hosts import Host

TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:=-]{0,63}$"


class CreateHostRequest(BaseModel):
    type: Literal["regular", "byoc"]
    team_id: str | None = Field(None, min_length=1, max_length=64, description="Required for BYOC hosts.")
    provider: str | None = Field(None, max_length=64)
    availability_zone: str | None = Field(None, max_length=64)


class CreateHostResponse(BaseModel):
    host: Host
    registration_token: str


class HostDeletePreview(BaseModel):
    host: Host
    sandbox_ids: list[str]


class HostHasCapsulesErrorBody(BaseModel):
    code: str
    message: str
    sandbox_ids: list[str]


class HostHasCapsulesError(BaseModel):
    error: HostHasCapsulesErrorBody


class AddTagRequest(BaseModel):
    tag: str = Field(..., pattern=TAG_PATTERN, description="1-64 characters: letters, digits, '.', '_', ':', '=', '-'.")
