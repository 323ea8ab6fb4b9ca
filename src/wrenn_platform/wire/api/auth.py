"""Bodies of the `auth` routes: signup, activate, login, switch-team (0.2.0 contract schemas)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_PASSWORD = 1024  # argon2 hashes anything, but an unbounded input is a cheap denial of service


def _email(value: str) -> str:
    value = value.strip().lower()
    if len(value) > 320 or not _EMAIL.match(value):
        raise ValueError("not a valid email address")
    return value


Email = Annotated[str, AfterValidator(_email), Field(json_schema_extra={"format": "email"})]
NewPassword = Annotated[str, Field(min_length=8, max_length=MAX_PASSWORD)]
Password = Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD)]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Token = Annotated[str, Field(min_length=1, max_length=256)]


class SignupRequest(BaseModel):
    email: Email
    password: NewPassword
    name: DisplayName


class SignupResponse(BaseModel):
    message: str


class ActivateRequest(BaseModel):
    token: Token


class LoginRequest(BaseModel):
    email: Email
    password: Password


class SwitchTeamRequest(BaseModel):
    team_id: Annotated[str, Field(min_length=1, max_length=64)]


class SessionResponse(BaseModel):
    """Identity data the SPA bootstraps from; the credential itself is the `wrenn_sid` cookie."""

    user_id: str
    team_id: str
    email: str
    name: str
    role: str
    is_admin: bool
