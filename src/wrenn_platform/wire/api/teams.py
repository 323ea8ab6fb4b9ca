"""Bodies of the `teams` routes (0.2.0 contract schemas: Team, TeamWithRole, TeamMember, TeamDetail)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from .auth import Email

Role = Literal["owner", "admin", "member"]
_TEAM_NAME = re.compile(r"^[A-Za-z0-9 _]{1,128}$")


def _team_name(value: str) -> str:
    value = value.strip()
    if not _TEAM_NAME.match(value):
        raise ValueError("must be 1-128 characters of A-Z a-z 0-9 space _")
    return value


TeamName = Annotated[
    str, AfterValidator(_team_name), Field(description="1-128 chars; A-Z a-z 0-9 space _")
]


class Team(BaseModel):
    id: str
    name: str
    slug: str = Field(description="Immutable 12-char hex slug (e.g. a1b2c3-d1e2f3)")
    created_at: datetime


class TeamWithRole(Team):
    role: Role


class TeamMember(BaseModel):
    user_id: str
    email: str
    role: Role
    joined_at: datetime


class TeamDetail(BaseModel):
    team: Team
    members: list[TeamMember]


class CreateTeamRequest(BaseModel):
    name: TeamName


class RenameTeamRequest(BaseModel):
    name: TeamName


class AddTeamMemberRequest(BaseModel):
    email: Email


class UpdateMemberRoleRequest(BaseModel):
    role: Literal["admin", "member"]
