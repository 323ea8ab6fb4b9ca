"""The capsule's record on disk (`<state_dir>/capsule.json`): enough to adopt it after a restart
and to clean it up when it cannot be adopted."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base import NetworkSlot

STATE_FILE = "capsule.json"


@dataclass
class CapsuleState:
    capsule_id: str
    template: str
    template_dir: str
    lowers: list[str]
    vcpus: int
    memory_mb: int
    disk_size_mb: int
    slot: NetworkSlot
    uid_base: int
    pid: int = 0  # host pid of the capsule's bwrap
    pid_start: int = 0  # its start time (clock ticks since boot) to recognise pid reuse
    paused: bool = False
    created_at: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["slot"]["dns_servers"] = list(self.slot.dns_servers)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CapsuleState:
        slot = dict(data.pop("slot"))
        slot["dns_servers"] = tuple(slot.get("dns_servers", ()))
        return cls(slot=NetworkSlot(**slot), **data)


def save(state_dir: Path, state: CapsuleState) -> None:
    tmp = state_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state.to_json()))
    os.replace(tmp, state_dir / STATE_FILE)


def load(state_dir: Path) -> CapsuleState | None:
    try:
        return CapsuleState.from_json(json.loads((state_dir / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def process_running(pid: int, start_time: int) -> bool:
    """The process `pid` started at `start_time` exists and has not exited (a zombie has)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X") and int(fields[19]) == start_time


def process_start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat, 0 if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])
