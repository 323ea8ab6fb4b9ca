"""The agent's record of each capsule on the host, persisted so a restarted agent can re-adopt it.

One JSON file per capsule under `<data_dir>/agent/capsules/`, written atomically (temp file,
rename; no fsync: it guards against the agent dying, not the machine — a reboot takes the
capsules' processes, mounts and network with it, and the next agent cleans up what records it
finds), mode 0600 (it holds the capsule's envd access token). A record is written with
status `starting` *before* the runtime creates anything, so a crash in the middle of a create
still leaves a record the next agent process cleans up.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wrenn_platform.host_agent.runtime.base import NetworkSlot, RunningCapsule
from wrenn_platform.wire.agent import CapsuleInfo


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class CapsuleRecord:
    id: str
    team_id: str | None
    runtime: str
    template: str
    template_dir: str
    vcpus: int
    memory_mb: int
    disk_size_mb: int
    timeout_sec: int  # effective, after clamping
    envd_access_token: str
    status: str = "starting"
    env_vars: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: utcnow().isoformat())
    started_at: str | None = None
    last_active_at: str | None = None
    slot: dict[str, Any] | None = None
    envd_url: str | None = None
    state_dir: str | None = None
    runtime_metadata: dict[str, str] = field(default_factory=dict)
    # Not persisted: monotonic time of the last activity and foreground commands in flight, for
    # the TTL reaper.
    last_active_mono: float = field(default=0.0, compare=False)
    busy: int = field(default=0, compare=False)

    def network_slot(self) -> NetworkSlot | None:
        if not self.slot:
            return None
        return NetworkSlot(**{**self.slot, "dns_servers": tuple(self.slot.get("dns_servers", ()))})

    def attach(self, running: RunningCapsule) -> None:
        self.slot = asdict(running.slot)
        self.envd_url = running.envd_url
        self.state_dir = str(running.state_dir)
        self.runtime = running.runtime
        self.runtime_metadata = dict(running.metadata)

    def touch(self) -> None:
        self.last_active_mono = time.monotonic()
        self.last_active_at = utcnow().isoformat()

    def info(self) -> CapsuleInfo:
        slot = self.slot or {}
        return CapsuleInfo(
            id=self.id,
            team_id=self.team_id,
            status=self.status,
            runtime=self.runtime,
            template=self.template,
            vcpus=self.vcpus,
            memory_mb=self.memory_mb,
            disk_size_mb=self.disk_size_mb,
            timeout_sec=self.timeout_sec,
            guest_ip=slot.get("guest_ip", ""),
            host_ip=slot.get("host_ip", ""),
            created_at=datetime.fromisoformat(self.created_at),
            started_at=datetime.fromisoformat(self.started_at) if self.started_at else None,
            last_active_at=datetime.fromisoformat(self.last_active_at) if self.last_active_at else None,
            metadata={**self.labels, **self.runtime_metadata},
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("last_active_mono")
        data.pop("busy")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CapsuleRecord:
        known = {f for f in cls.__dataclass_fields__ if f not in ("last_active_mono", "busy")}
        return cls(**{k: v for k, v in data.items() if k in known})


class RecordStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, capsule_id: str) -> Path:
        return self.root / f"{capsule_id}.json"

    def save(self, record: CapsuleRecord) -> None:
        target = self.path(record.id)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "w") as f:
            json.dump(record.to_json(), f)
        os.replace(tmp, target)

    def delete(self, capsule_id: str) -> None:
        self.path(capsule_id).unlink(missing_ok=True)

    def load_all(self) -> tuple[list[CapsuleRecord], list[tuple[Path, Exception]]]:
        """Every record on disk, and the files that could not be read (with why)."""
        records: list[CapsuleRecord] = []
        broken: list[tuple[Path, Exception]] = []
        for path in sorted(self.root.glob("*.json")):
            try:
                records.append(CapsuleRecord.from_json(json.loads(path.read_text())))
            except (OSError, ValueError, TypeError) as exc:
                broken.append((path, exc))
        for stale in self.root.glob(".*.json.*"):
            stale.unlink(missing_ok=True)
        return records, broken
