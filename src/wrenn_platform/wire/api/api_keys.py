"""Bodies of the `api-keys` routes (0.2.0 contract schemas: CreateAPIKeyRequest, APIKeyResponse)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints


class CreateAPIKeyRequest(BaseModel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] = (
        "Unnamed API Key"
    )


class APIKeyResponse(BaseModel):
    id: str
    team_id: str
    name: str
    key_prefix: str = Field(description='Display prefix (e.g. "wrn_ab12cd34...")')
    created_at: datetime
    last_used: datetime | None = None
    key: str | None = Field(None, description="Full plaintext key. Only returned on creation, never again.")
