"""The host agent's internal API: requests, responses, stream messages and errors.

Shared by the agent (`host_agent.api`, `host_agent.service`) and the control plane's client
(`agent_link.client`). Field names follow the public contract where the two overlap, so the
control plane can pass them through; WebSocket messages are exactly the contract's tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from wrenn_platform.wire.api import capsules as contract

# The agent answers these exactly as the public API does: one definition, in the contract's models.
from wrenn_platform.wire.api.capsules import BackgroundExecResponse as BackgroundExecResponse
from wrenn_platform.wire.api.capsules import CapsuleMetrics as CapsuleMetrics
from wrenn_platform.wire.api.capsules import FileEntry as FileEntry
from wrenn_platform.wire.api.capsules import ListDirRequest as ListDirRequest
from wrenn_platform.wire.api.capsules import ListDirResponse as ListDirResponse
from wrenn_platform.wire.api.capsules import MakeDirRequest as MakeDirRequest
from wrenn_platform.wire.api.capsules import MakeDirResponse as MakeDirResponse
from wrenn_platform.wire.api.capsules import MetricPoint as MetricPoint
from wrenn_platform.wire.api.capsules import MetricsRange as MetricsRange
from wrenn_platform.wire.api.capsules import ProcessEntry as ProcessEntry
from wrenn_platform.wire.api.capsules import ProcessListResponse as ProcessListResponse
from wrenn_platform.wire.api.capsules import RemoveRequest as RemoveRequest
from wrenn_platform.wire.start import StartCommand
from wrenn_platform.wire.warm_pool import PoolKey
from wrenn_platform.wire.warm_pool import WarmPoolInfo as WarmPoolInfo

CapsuleStatus = Literal["starting", "running", "pausing", "paused", "resuming", "stopping", "stopped", "error"]
RuntimeName = Literal["namespace", "microvm"]
EventName = Literal["sandbox.auto_paused", "sandbox.stopped", "sandbox.error"]


# ---- errors -------------------------------------------------------------------------------------


class AgentError(Exception):
    """An operation the agent refused or failed; `code` and `status` travel over HTTP unchanged."""

    status = 500
    code = "agent_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(AgentError):
    status = 400
    code = "invalid_request"


class Unauthorized(AgentError):
    status = 401
    code = "unauthorized"


class NotFound(AgentError):
    status = 404
    code = "not_found"


class Conflict(AgentError):
    """The capsule is not in a state that allows the operation (e.g. exec on a paused capsule)."""

    status = 409
    code = "conflict"


class AlreadyExists(AgentError):
    status = 409
    code = "already_exists"


class ResourceExhausted(AgentError):
    """Out of disk space inside the capsule (the contract's 413 for uploads)."""

    status = 413
    code = "resource_exhausted"


class GuestError(AgentError):
    """envd inside the capsule failed or did not answer."""

    status = 502
    code = "guest_error"


ERRORS_BY_CODE: dict[str, type[AgentError]] = {
    cls.code: cls
    for cls in (AgentError, BadRequest, Unauthorized, NotFound, Conflict, AlreadyExists, ResourceExhausted,
                GuestError)
}


def error_from_body(status: int, body: Any) -> AgentError:
    try:
        err = body["error"]
        cls = ERRORS_BY_CODE.get(err["code"], AgentError)
        return cls(str(err["message"]))
    except (KeyError, TypeError):
        exc = AgentError(f"agent answered {status}: {body!r}"[:500])
        exc.status = status
        return exc


# ---- capsules -----------------------------------------------------------------------------------


class CreateCapsuleRequest(BaseModel):
    capsule_id: str | None = Field(None, description="Chosen by the control plane (`cl-...`); generated if absent.")
    team_id: str | None = Field(None, description="Owner; needed to resolve the team's snapshot templates.")
    template: str = "minimal"
    vcpus: int = Field(1, ge=1, le=64)
    memory_mb: int = Field(512, ge=64)
    disk_size_mb: int = Field(5120, ge=16)
    timeout_sec: int = Field(0, ge=0, description="Inactivity auto-pause; 0 never, positive values clamped up.")
    env_vars: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict, description="Labels kept with the capsule.")
    default_user: str | None = Field(None, description="Who envd runs processes as unless a call names a "
                                     "user; None: the host's default.")
    envd_access_token: str | None = Field(None, description="The capsule's envd token (the control plane "
                                          "derives it, so it can hand it to E2B clients); None: generated here.")


class CapsuleInfo(BaseModel):
    id: str
    team_id: str | None = None
    status: CapsuleStatus
    runtime: RuntimeName | str
    template: str
    vcpus: int
    memory_mb: int
    disk_size_mb: int
    timeout_sec: int  # effective (after clamping)
    guest_ip: str
    host_ip: str
    created_at: datetime
    started_at: datetime | None = None
    last_active_at: datetime | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class DrainWarmPoolRequest(BaseModel):
    template: str
    vcpus: int
    memory_mb: int
    disk_size_mb: int

    @property
    def key(self) -> PoolKey:
        return PoolKey(self.template, self.vcpus, self.memory_mb, self.disk_size_mb)


class DrainWarmPoolResponse(BaseModel):
    drained: int  # pooled capsules destroyed; the pool is not refilled until the agent restarts


class SnapshotRequest(BaseModel):
    team_id: str
    name: str = Field(..., min_length=1, max_length=63)
    start: StartCommand | None = Field(None, description="The template's service; default: its parent's.")


class TemplateOut(BaseModel):
    """A template on this host, shaped as the contract's `Template`."""

    name: str
    type: Literal["base", "snapshot"]
    vcpus: int | None = None
    memory_mb: int | None = None
    size_bytes: int = 0
    created_at: str
    platform: bool
    metadata: dict[str, str] = Field(default_factory=dict)


class AgentInfo(BaseModel):
    host_id: str
    runtime: str
    version: str
    capsules: int
    isolation_note: str = ""
    warm_pools: list[WarmPoolInfo] = Field(default_factory=list)


# ---- exec and processes -------------------------------------------------------------------------


class ExecRequest(contract.ExecRequest):
    """The contract's exec request, and the user to run it as."""

    user: str | None = None


class ExecResponse(contract.ExecResponse):
    """The contract's exec response, and whether the command was killed at its timeout."""

    timed_out: bool = False  # killed at `timeout_sec`; the output is what it wrote until then


# ---- guest operations ---------------------------------------------------------------------------

Req = TypeVar("Req", bound=BaseModel)
Resp = TypeVar("Resp", bound=BaseModel)


class Empty(BaseModel):
    """The request or answer of an operation that needs no fields."""


class KillRequest(BaseModel):
    selector: str = Field(..., min_length=1, description="A pid, or a tag.")
    signal: Literal["SIGKILL", "SIGTERM"] = "SIGKILL"


@dataclass(frozen=True)
class GuestOp(Generic[Req, Resp]):
    """A unary operation inside a capsule, as the agent link carries it: one generic call
    (`AgentClient.guest`, `POST /v1/capsules/{id}/guest/{name}` on the agent) taking `request`
    and answering `response`. `doing` completes "cannot {doing} capsule ..." when it is not
    running. The host agent answers each one with a `Guest` method (`host_agent.guest.OPERATIONS`)."""

    name: str
    request: type[Req]
    response: type[Resp]
    doing: str


LIST_PROCESSES = GuestOp("list_processes", Empty, ProcessListResponse, "list processes of")
KILL_PROCESS = GuestOp("kill_process", KillRequest, Empty, "kill a process in")
LIST_DIR = GuestOp("list_dir", ListDirRequest, ListDirResponse, "list files of")
MAKE_DIR = GuestOp("make_dir", MakeDirRequest, MakeDirResponse, "create directories in")
REMOVE = GuestOp("remove", RemoveRequest, Empty, "remove files in")
GUEST_OPS: dict[str, GuestOp[Any, Any]] = {
    op.name: op for op in (LIST_PROCESSES, KILL_PROCESS, LIST_DIR, MAKE_DIR, REMOVE)
}


# ---- autonomous events --------------------------------------------------------------------------


class SandboxEvent(BaseModel):
    """What the agent reports on its own; the body of the contract's `POST /v1/hosts/sandbox-events`
    plus `seq` (per agent process, for resuming a subscription) and a human-readable `reason`."""

    event: str
    sandbox_id: str
    host_id: str
    timestamp: int
    seq: int = 0
    reason: str = ""

    def contract_body(self) -> dict[str, Any]:
        return {"event": self.event, "sandbox_id": self.sandbox_id, "host_id": self.host_id,
                "timestamp": self.timestamp}


# ---- WebSocket messages (the contract's tables) -------------------------------------------------
# exec/process streams, server → client: {"type": "start", "pid"}, {"type": "stdout"|"stderr", "data"},
#   {"type": "exit", "exit_code"}, {"type": "error", "data"}; client → server: {"type": "start", "cmd",
#   "args", "envs", "cwd"} (exec stream only), {"type": "stop"}.
# PTY, client → server: {"type": "start", cmd, args, cols, rows, envs, cwd, user} | {"type": "connect",
#   "tag"} first, then {"type": "input", "data": b64}, {"type": "resize", cols, rows}, {"type": "kill"};
#   server → client: {"type": "started", "tag", "pid"}, {"type": "output", "data": b64},
#   {"type": "exit", "exit_code"}, {"type": "error", "data", "fatal"}, {"type": "ping"}.


class StreamStart(BaseModel):
    type: Literal["start"] = "start"
    cmd: str
    args: list[str] = Field(default_factory=list)
    envs: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    user: str | None = None


class PtyStart(BaseModel):
    type: Literal["start"] = "start"
    cmd: str = "/bin/bash"
    args: list[str] = Field(default_factory=list)
    cols: int = Field(80, ge=1, le=1000)
    rows: int = Field(24, ge=1, le=1000)
    envs: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    user: str | None = None


class PtyConnect(BaseModel):
    type: Literal["connect"] = "connect"
    tag: str
