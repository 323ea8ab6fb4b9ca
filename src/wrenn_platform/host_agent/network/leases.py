"""Slot leases shared by every agent process on the machine.

A lease is a file `<lease_dir>/<index>.json` created with O_EXCL while holding an exclusive
flock on `<lease_dir>/.lock`; releasing it deletes the file. The lock makes "scan for a free
index, then take it" atomic across processes; the file (not the lock) is what holds the slot, so a
lease outlives the agent that took it (its capsule keeps running and a restarted agent re-adopts
it). Leases live under /run: a reboot, which also removes every netns, forgets them all.

A hint file keeps allocation round-robin so a just-released slot is not immediately reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .addressing import MAX_SLOTS

DEFAULT_LEASE_DIR = Path(os.environ.get("WRENN_SLOT_LEASE_DIR", "/run/wrenn/slots"))


class NoFreeSlot(Exception):
    pass


@dataclass(frozen=True)
class Lease:
    index: int
    owner: str  # who took it: an agent's identity (its data dir), used to reclaim its own leases
    holder: str  # what it is for, e.g. a capsule id
    pid: int
    created: float


@contextlib.contextmanager
def _locked(lease_dir: Path) -> Iterator[None]:
    lease_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(lease_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def _path(lease_dir: Path, index: int) -> Path:
    return lease_dir / f"{index}.json"


def acquire(owner: str, holder: str, lease_dir: Path = DEFAULT_LEASE_DIR, max_slots: int = MAX_SLOTS) -> Lease:
    with _locked(lease_dir):
        hint_path = lease_dir / ".next"
        try:
            start = int(hint_path.read_text()) % max_slots
        except (OSError, ValueError):
            start = 0
        for step in range(max_slots):
            index = (start + step) % max_slots
            lease = Lease(index=index, owner=owner, holder=holder, pid=os.getpid(), created=time.time())
            try:
                fd = os.open(_path(lease_dir, index), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(lease.__dict__, f)
            hint_path.write_text(str(index + 1))
            return lease
    raise NoFreeSlot(f"all {max_slots} network slots are in use")


def release(index: int, lease_dir: Path = DEFAULT_LEASE_DIR) -> None:
    with _locked(lease_dir), contextlib.suppress(FileNotFoundError):
        _path(lease_dir, index).unlink()


def read(index: int, lease_dir: Path = DEFAULT_LEASE_DIR) -> Lease | None:
    try:
        data = json.loads(_path(lease_dir, index).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return Lease(**data)


def list_leases(lease_dir: Path = DEFAULT_LEASE_DIR) -> list[Lease]:
    leases: list[Lease] = []
    if not lease_dir.is_dir():
        return leases
    for path in lease_dir.glob("*.json"):
        with contextlib.suppress(ValueError):
            lease = read(int(path.stem), lease_dir)
            if lease is not None:
                leases.append(lease)
    return sorted(leases, key=lambda lease: lease.index)
