"""Bodies of `/v1/admin/capsules*` that differ from the tenant routes' (`capsules.py`)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from .capsules import CreateCapsuleRequest


class AdminCreateCapsuleRequest(CreateCapsuleRequest):
    # The team the capsule is created for (default: the admin's session team). Not in the
    # contract's request schema, so hidden from the generated document like `metadata`.
    team_id: SkipJsonSchema[str | None] = Field(None, min_length=1, max_length=64)


class AdminSnapshotRequest(BaseModel):
    name: str = Field(..., min_length=1, max_length=128)
