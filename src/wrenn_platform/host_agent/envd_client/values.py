"""What envd's calls return, as plain values (the decoding is in `codec`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Selector = int | str  # a process: its pid, or its tag
Stream = Literal["stdout", "stderr", "pty"]
SignalName = Literal["SIGTERM", "SIGKILL"]
EntryType = Literal["file", "directory", "symlink"]


@dataclass(frozen=True, slots=True)
class PtySize:
    cols: int
    rows: int


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    tag: str
    cmd: str
    args: list[str]
    envs: dict[str, str]
    cwd: str | None


@dataclass(frozen=True, slots=True)
class ProcessStarted:
    pid: int


@dataclass(frozen=True, slots=True)
class ProcessOutput:
    stream: Stream
    data: bytes


@dataclass(frozen=True, slots=True)
class ProcessEnded:
    exit_code: int  # -1 when killed by a signal
    exited: bool  # False when killed by a signal
    status: str  # "exit status 3", "signal: killed"
    error: str | None = None


ProcessEvent = ProcessStarted | ProcessOutput | ProcessEnded


@dataclass(slots=True)
class CommandResult:
    pid: int
    exit_code: int
    exited: bool
    status: str
    stdout: bytes = b""
    stderr: bytes = b""
    timed_out: bool = False  # killed at its timeout


@dataclass(frozen=True, slots=True)
class GuestMetrics:
    ts: int
    cpu_count: int
    cpu_used_pct: float
    mem_total: int
    mem_used: int
    disk_total: int
    disk_used: int
