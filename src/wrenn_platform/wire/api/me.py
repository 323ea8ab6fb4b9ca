"""Bodies of the `me` and `account` routes (0.2.0 contract schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from .auth import DisplayName, Email, NewPassword, Password, Token


class MeResponse(BaseModel):
    name: str
    email: str
    has_password: bool
    providers: list[str]


class UpdateNameRequest(BaseModel):
    name: DisplayName


class DeleteAccountRequest(BaseModel):
    confirmation: Annotated[str, Field(max_length=320, description="Must match the user's email (case-insensitive)")]


class ChangePasswordRequest(BaseModel):
    current_password: Password | None = None
    new_password: NewPassword
    confirm_password: Annotated[str, Field(max_length=1024)] | None = None


class PasswordResetRequest(BaseModel):
    email: Email


class PasswordResetConfirmRequest(BaseModel):
    token: Token
    new_password: NewPassword


class SessionInfo(BaseModel):
    id: str
    user_agent: str
    ip_address: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    current: bool


class SessionsResponse(BaseModel):
    sessions: list[SessionInfo]


class AuthUrlResponse(BaseModel):
    auth_url: str
