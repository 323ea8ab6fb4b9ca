"""Capsule, exec, process, file, metrics, stats, usage and snapshot models of the 0.2.0 contract.

Class names are the contract's schema names, so the generated OpenAPI matches it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

CapsuleStatus = Literal[
    "pending", "starting", "running", "pausing", "paused", "resuming", "stopping", "hibernated", "stopped",
    "missing", "error",
]
MetricsRange = Literal["5m", "10m", "1h", "2h", "6h", "12h", "24h"]
StatsRange = Literal["5m", "1h", "6h", "24h", "30d"]
# The longest auto-pause TTL (a year); 0 already means never. Unbounded, a huge value overflowed
# the database's integer and the deadline arithmetic (a 500).
MAX_TIMEOUT_SEC = 365 * 24 * 3600


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL byte")
    return value


# A string bound for a command line, an environment or a path: execve and open refuse a NUL byte,
# so it is refused here (400) rather than failing in the capsule.
Text = Annotated[str, AfterValidator(_no_nul)]


class Capsule(BaseModel):
    id: str
    status: CapsuleStatus
    template: str
    vcpus: int
    memory_mb: int
    timeout_sec: int
    guest_ip: str
    host_ip: str
    created_at: datetime
    started_at: datetime | None = None
    last_active_at: datetime | None = None
    last_updated: datetime
    metadata: dict[str, str] | None = None
    disk_size_mb: int | None = None


def capsule_metadata(labels: dict[str, str] | None, error: str | None) -> dict[str, str] | None:
    """`Capsule.metadata`: the capsule's labels, plus `error` while its last operation's failure stands."""
    metadata = dict(labels or {})
    if error:
        metadata["error"] = error
    return metadata or None


class CreateCapsuleRequest(BaseModel):
    template: str = Field("minimal", min_length=1, max_length=128)
    vcpus: int = Field(1, ge=1, le=64)
    memory_mb: int = Field(512, ge=64, le=1024 * 1024)
    disk_size_mb: int = Field(5120, ge=16, le=1024 * 1024)
    timeout_sec: int = Field(0, ge=0, le=MAX_TIMEOUT_SEC,
                             description="Auto-pause TTL; positive values below 60 are clamped to 60.")
    # Labels kept with the capsule (the `Capsule.metadata` the contract describes); accepted but not
    # part of the contract's request schema, so hidden from the generated document.
    metadata: SkipJsonSchema[dict[str, str] | None] = None


class ExecRequest(BaseModel):
    cmd: Text = Field(..., min_length=1)
    args: list[Text] = Field(default_factory=list)
    timeout_sec: int = Field(30, ge=1, le=24 * 3600)
    background: bool = False
    tag: str | None = Field(None, min_length=1, max_length=64)
    envs: dict[Text, Text] = Field(default_factory=dict)
    cwd: Text | None = None


class ExecResponse(BaseModel):
    sandbox_id: str
    cmd: str
    stdout: str
    stderr: str
    exit_code: int
    duration_ms: int
    encoding: Literal["utf-8", "base64"] = "utf-8"


class BackgroundExecResponse(BaseModel):
    sandbox_id: str
    cmd: str
    pid: int
    tag: str


class ProcessEntry(BaseModel):
    pid: int
    tag: str | None = None
    cmd: str
    args: list[str] = Field(default_factory=list)


class ProcessListResponse(BaseModel):
    processes: list[ProcessEntry]


class FileEntry(BaseModel):
    name: str
    path: str
    type: Literal["file", "directory", "symlink"]
    size: int = 0
    mode: int = 0
    permissions: str = ""
    owner: str = ""
    group: str = ""
    modified_at: int = 0
    symlink_target: str | None = None


class ReadFileRequest(BaseModel):
    path: Text = Field(..., min_length=1)


class ListDirRequest(BaseModel):
    path: Text = Field(..., min_length=1)
    depth: int = Field(1, ge=0, le=32)


class ListDirResponse(BaseModel):
    entries: list[FileEntry]


class MakeDirRequest(BaseModel):
    path: Text = Field(..., min_length=1)


class MakeDirResponse(BaseModel):
    entry: FileEntry


class RemoveRequest(BaseModel):
    path: Text = Field(..., min_length=1)


class MetricPoint(BaseModel):
    timestamp_unix: int
    cpu_pct: float
    mem_bytes: int
    disk_bytes: int


class CapsuleMetrics(BaseModel):
    sandbox_id: str
    range: MetricsRange
    points: list[MetricPoint]


class StatsCurrent(BaseModel):
    running_count: int
    vcpus_reserved: int
    memory_mb_reserved: int
    sampled_at: datetime | None = None


class StatsPeaks(BaseModel):
    running_count: int
    vcpus: int
    memory_mb: int


class StatsSeries(BaseModel):
    labels: list[datetime]
    running: list[int]
    vcpus: list[int]
    memory_mb: list[int]


class CapsuleStats(BaseModel):
    range: StatsRange
    current: StatsCurrent
    peaks: StatsPeaks
    series: StatsSeries


class UsagePoint(BaseModel):
    date: date
    cpu_minutes: float
    ram_mb_minutes: float


class UsageResponse(BaseModel):
    from_: date = Field(..., alias="from")
    to: date
    points: list[UsagePoint]

    model_config = {"populate_by_name": True}


class Template(BaseModel):
    name: str
    type: Literal["base", "snapshot"]
    vcpus: int | None = None
    memory_mb: int | None = None
    size_bytes: int = 0
    created_at: datetime
    platform: bool
    metadata: dict[str, str] | None = None


class CreateSnapshotRequest(BaseModel):
    sandbox_id: str = Field(..., min_length=1)
    name: str | None = Field(None, min_length=1, max_length=63, pattern=r"^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$",
                             description="Lower-case letters, digits, '.', '_' and '-'.")
