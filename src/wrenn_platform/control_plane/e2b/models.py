"""E2B's REST shapes (its OpenAPI names, camelCase on the wire), as the `e2b` client 2.63 reads them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# E2B's API default lifetime when a create does not name one (the client's own default is 300 s).
DEFAULT_TIMEOUT_S = 15
MAX_TIMEOUT_S = 366 * 24 * 3600  # the Wrenn API's bound on timeouts

State = Literal["running", "paused"]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class NewSandbox(_In):
    template_id: str = Field(alias="templateID", min_length=1, max_length=128)
    timeout: int = Field(DEFAULT_TIMEOUT_S, ge=0, le=MAX_TIMEOUT_S)
    auto_pause: bool = Field(False, alias="autoPause")
    metadata: dict[str, str] | None = None
    env_vars: dict[str, str] | None = Field(None, alias="envVars")
    secure: bool | None = None  # every sandbox's envd requires its token; accepted and ignored


class ConnectSandbox(_In):
    timeout: int | None = Field(None, ge=0, le=MAX_TIMEOUT_S)


class TimeoutRequest(_In):
    timeout: int = Field(ge=0, le=MAX_TIMEOUT_S)


class SnapshotRequest(_In):
    name: str | None = Field(None, min_length=1, max_length=128)


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class Sandbox(_Out):
    """The answer to a create or a connect."""

    template_id: str = Field(serialization_alias="templateID")
    sandbox_id: str = Field(serialization_alias="sandboxID")
    client_id: str = Field(serialization_alias="clientID")
    envd_version: str = Field(serialization_alias="envdVersion")
    envd_access_token: str = Field(serialization_alias="envdAccessToken")
    domain: str | None = None


class ListedSandbox(_Out):
    template_id: str = Field(serialization_alias="templateID")
    alias: str | None = None
    sandbox_id: str = Field(serialization_alias="sandboxID")
    client_id: str = Field(serialization_alias="clientID")
    started_at: datetime = Field(serialization_alias="startedAt")
    end_at: datetime = Field(serialization_alias="endAt")
    cpu_count: int = Field(serialization_alias="cpuCount")
    memory_mb: int = Field(serialization_alias="memoryMB")
    disk_size_mb: int = Field(serialization_alias="diskSizeMB")
    state: State
    envd_version: str = Field(serialization_alias="envdVersion")
    metadata: dict[str, str]


class SandboxDetail(ListedSandbox):
    envd_access_token: str = Field(serialization_alias="envdAccessToken")
    domain: str | None = None


class SandboxMetric(_Out):
    timestamp: datetime
    timestamp_unix: int = Field(serialization_alias="timestampUnix")
    cpu_count: int = Field(serialization_alias="cpuCount")
    cpu_used_pct: float = Field(serialization_alias="cpuUsedPct")
    mem_used: int = Field(serialization_alias="memUsed")
    mem_total: int = Field(serialization_alias="memTotal")
    mem_cache: int = Field(serialization_alias="memCache")
    disk_used: int = Field(serialization_alias="diskUsed")
    disk_total: int = Field(serialization_alias="diskTotal")


class SnapshotInfo(_Out):
    snapshot_id: str = Field(serialization_alias="snapshotID")
    names: list[str]
