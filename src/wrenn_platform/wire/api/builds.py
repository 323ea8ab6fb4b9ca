"""Bodies of `/v1/admin/builds*` (the contract leaves them free-form objects).

A recipe: a base template, files to put in, shell steps to run (in order, `sh -c`, stopping at the
first non-zero exit), run in a capsule whose snapshot becomes the team template `name`; optionally a
service (`start`: command and readiness check) that is started and ready before the snapshot, and
that every capsule of the template runs (docs/templates-start-commands.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self

from pydantic import BaseModel, Field, model_validator

from wrenn_platform.wire.start import StartCommand

TEMPLATE_NAME = r"^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$"
BuildStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class BuildFile(BaseModel):
    path: str = Field(..., pattern=r"^/", max_length=1024, description="Absolute path in the capsule.")
    content: str = Field(..., max_length=1024 * 1024)
    encoding: Literal["utf-8", "base64"] = "utf-8"
    mode: str | None = Field(None, pattern=r"^[0-7]{3,4}$", description="Octal permissions, e.g. 0755.")


class CreateBuildRequest(BaseModel):
    name: str = Field(..., pattern=TEMPLATE_NAME, description="Name of the template the build produces.")
    base_template: str = Field("minimal", min_length=1, max_length=128)
    team_id: str | None = Field(None, min_length=1, max_length=64,
                                description="Team that owns the result (default: the admin's session team).")
    steps: list[str] = Field(default_factory=list, max_length=200)
    files: list[BuildFile] = Field(default_factory=list, max_length=200)
    envs: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = Field(None, pattern=r"^/")
    user: str = Field("root", min_length=1, max_length=32, description="User the steps run as.")
    step_timeout_sec: int = Field(600, ge=1, le=24 * 3600)
    vcpus: int = Field(1, ge=1, le=64)
    memory_mb: int = Field(512, ge=64, le=1024 * 1024)
    disk_size_mb: int = Field(5120, ge=16, le=1024 * 1024)
    start: StartCommand | None = Field(None, description="Service every capsule of the template runs; "
                                                         "as `user` unless it names its own.")

    @model_validator(mode="after")
    def _service_user(self) -> Self:
        if self.start is not None and "user" not in self.start.model_fields_set:
            self.start.user = self.user
        return self


class Build(BaseModel):
    id: str
    name: str
    team_id: str
    base_template: str
    status: BuildStatus
    steps: list[str]
    files: list[str]  # their paths
    start: StartCommand | None
    capsule_id: str | None
    logs: str
    error: str
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
