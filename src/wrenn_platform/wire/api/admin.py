"""Bodies of the admin routes for users and teams (`/v1/admin/users*`, `/v1/admin/teams*`).

The contract leaves the list items as free-form objects; these are the fields an operator needs.
Flags are strict booleans: `"yes"` or `1` is a 400, not a guess.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, StrictBool


class AdminUser(BaseModel):
    id: str
    email: str
    name: str
    is_active: bool
    is_admin: bool
    created_at: datetime
    deleted_at: datetime | None


class AdminTeam(BaseModel):
    id: str
    name: str
    slug: str
    is_byoc: bool
    created_at: datetime
    deleted_at: datetime | None
    member_count: int


class SetUserActiveRequest(BaseModel):
    active: StrictBool


class SetUserAdminRequest(BaseModel):
    admin: StrictBool


class SetTeamBYOCRequest(BaseModel):
    byoc: StrictBool
