"""A template's start command and readiness check: declared by a build (`/v1/admin/builds`, a platform
recipe), kept in the template's `template.json`, run by the host agent for every capsule of the template.

One shape everywhere: the admin builds API body (`start`), the agent's snapshot request, the template
store. See docs/templates-start-commands.md.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field, model_validator


class ReadyCheck(BaseModel):
    """Passes when `cmd` exits 0 in the capsule, or when `http_port` answers an HTTP GET of `http_path`
    with a status below 400. Tried up to `retries` times, `interval_sec` apart, each try bounded by
    `timeout_sec`."""

    cmd: str | None = Field(None, min_length=1, max_length=4096,
                            description="Shell command (`sh -c`) run as the start command's user.")
    http_port: int | None = Field(None, ge=1, le=65535, description="Port probed over HTTP from the host.")
    http_path: str = Field("/", pattern=r"^/", max_length=1024)
    interval_sec: float = Field(0.5, ge=0.01, le=60)
    timeout_sec: float = Field(5.0, gt=0, le=300)
    retries: int = Field(120, ge=1, le=10_000)

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.cmd is None) == (self.http_port is None):
            raise ValueError("a readiness check needs exactly one of `cmd` and `http_port`")
        return self

    def describe(self) -> str:
        return f"`{self.cmd}`" if self.cmd is not None else f"HTTP GET :{self.http_port}{self.http_path}"


class StartCommand(BaseModel):
    """A service every capsule of the template runs from boot (and after a namespace restore)."""

    cmd: str = Field(..., min_length=1, max_length=4096, description="Shell command (`sh -c`), kept running.")
    user: str = Field("user", min_length=1, max_length=32)
    cwd: str | None = Field(None, pattern=r"^/")
    envs: dict[str, str] = Field(default_factory=dict)
    ready: ReadyCheck | None = Field(None, description="Without one the capsule is running once the command started.")
