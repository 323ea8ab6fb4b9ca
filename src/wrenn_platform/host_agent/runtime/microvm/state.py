"""What the runtime keeps on disk per capsule and per snapshot template (JSON, root-only)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..base import NetworkSlot

CAPSULE_FILE = "capsule.json"
SNAPSHOT_FILE = "microvm.json"
MEMORY_FILE = "memory"
DISK_FILE = "disk.qcow2"
STATE_FILE = "state"
QMP_SOCKET = "qmp.sock"
CONSOLE_LOG = "console.log"
QEMU_LOG = "qemu.log"


@dataclass
class VmShape:
    """What a restore must reproduce exactly: the machine a state file was written by."""

    vcpus: int
    memory_mb: int
    disk_size_mb: int
    kernel_version: str
    accel: str
    cmdline_env: dict[str, str] = field(default_factory=dict)


@dataclass
class CapsuleRecord:
    capsule_id: str
    slot: NetworkSlot
    shape: VmShape
    envd_token: str
    uid: int
    status: str  # "running" | "paused"
    pid: int | None
    metadata: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CapsuleRecord:
        slot = dict(data["slot"])
        slot["dns_servers"] = tuple(slot.get("dns_servers") or ())
        return cls(
            capsule_id=data["capsule_id"],
            slot=NetworkSlot(**slot),
            shape=VmShape(**data["shape"]),
            envd_token=data["envd_token"],
            uid=int(data["uid"]),
            status=data["status"],
            pid=data.get("pid"),
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass
class SnapshotRecord:
    shape: VmShape
    envd_token: str  # the token envd in the saved memory expects (clones change it via /init)
    metadata: dict[str, str]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SnapshotRecord:
        return cls(VmShape(**data["shape"]), data["envd_token"], dict(data.get("metadata") or {}))


def write_json(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)  # mkstemp already made it 0600


def read_json(path: Path) -> dict[str, Any]:
    with open(path) as f:
        data = json.load(f)
    assert isinstance(data, dict)
    return data
