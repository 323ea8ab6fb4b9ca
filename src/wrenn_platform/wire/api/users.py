"""Bodies of the `users` routes (0.2.0 contract schema: UserSearchResult)."""

from __future__ import annotations

from pydantic import BaseModel


class UserSearchResult(BaseModel):
    user_id: str
    email: str
