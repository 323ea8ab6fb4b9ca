"""The template store: where templates live on disk, what they are, and how snapshots are added.

On-disk layout
--------------

Platform templates (built by `wrenn template build`, shared by every team)::

    <cache_dir>/templates/<name>/<recipe-hash>/   one finished build, never modified afterwards
        template.json                            metadata (see TemplateInfo)
        rootfs/                                  the root file system tree (read-only for runtimes)
    <cache_dir>/templates/<name>/current         symlink to the newest finished build

Team snapshot templates (written by a runtime's `snapshot`)::

    <data_dir>/templates/<team_id>/<name>/
        template.json                            written by this store, last, then the dir is renamed in
        ...                                      files owned by the runtime that made the snapshot

Runtime-owned files inside a snapshot template (the runtime named in `template.json` reads them):

- namespace: `upper/` (the capsule's overlay upper dir; lower is `parent_dir`/rootfs)
- microvm: `memory` (guest RAM file), `state` (device state), `disk.qcow2` or `disk.img` (flattened)

A directory whose name starts with "." is unfinished (being written or left by a crash) and is never
listed or resolved. Templates are immutable once renamed into place: runtimes must not write into
a template directory (clone or overlay it instead).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from wrenn_platform.agent_link.constants import PLATFORM_TEMPLATE_NAMES
from wrenn_platform.wire.start import StartCommand

DEFAULT_CACHE_DIR = Path(os.environ.get("WRENN_CACHE_DIR", "/var/cache/wrenn"))
DEFAULT_DATA_DIR = Path(os.environ.get("WRENN_DATA_DIR", "/var/lib/wrenn"))
METADATA_FILE = "template.json"
ROOTFS_DIR = "rootfs"
CURRENT_LINK = "current"

TemplateType = Literal["base", "snapshot"]

_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$")
_TEAM_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,126}[A-Za-z0-9])?$")


class TemplateError(Exception):
    """Base of the store's errors; messages are safe to show to the template's owner."""


class InvalidTemplateName(TemplateError, ValueError):
    pass


class TemplateNotFound(TemplateError, LookupError):
    pass


class TemplateExists(TemplateError):
    pass


class TemplateInUse(TemplateError):
    """Another template is layered on this one (a snapshot's `parent_dir`)."""


def validate_name(name: str) -> str:
    """Return `name` if it is a valid template name, else raise InvalidTemplateName."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise InvalidTemplateName(
            f"invalid template name {name!r}: use 1-63 characters from a-z, 0-9, '.', '_', '-', "
            "starting and ending with a letter or digit"
        )
    return name


def validate_team_id(team_id: str) -> str:
    if not isinstance(team_id, str) or not _TEAM_RE.match(team_id):
        raise InvalidTemplateName(f"invalid team id {team_id!r}: use letters, digits, '_' and '-'")
    return team_id


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class TemplateInfo:
    """A template's metadata (`template.json`) and where it lives."""

    name: str
    type: TemplateType
    platform: bool
    path: Path  # the template directory (CapsuleSpec.template_dir)
    team_id: str | None = None
    vcpus: int | None = None
    memory_mb: int | None = None
    size_bytes: int = 0
    created_at: str = field(default_factory=_now)
    recipe_hash: str | None = None
    runtime: str | None = None  # snapshots: the runtime that wrote (and can restore) it
    parent_dir: Path | None = None  # snapshots: the template dir the capsule was created from
    metadata: dict[str, str] = field(default_factory=dict)
    default_user: str | None = None  # who processes run as unless a call names a user; None: DEFAULT_USER
    start: StartCommand | None = None  # the service every capsule of this template runs

    @property
    def service_in_memory(self) -> bool:
        """A microvm snapshot restores its processes: the start command is running already."""
        return self.type == "snapshot" and self.runtime == "microvm"

    @property
    def rootfs(self) -> Path:
        """The root file system tree (base templates; snapshots of the namespace runtime layer on
        their parent's)."""
        return self.path / ROOTFS_DIR

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "platform": self.platform,
            "team_id": self.team_id,
            "vcpus": self.vcpus,
            "memory_mb": self.memory_mb,
            "size_bytes": self.size_bytes,
            "created_at": self.created_at,
            "recipe_hash": self.recipe_hash,
            "runtime": self.runtime,
            "parent_dir": str(self.parent_dir) if self.parent_dir else None,
            "metadata": dict(self.metadata),
            "default_user": self.default_user,
            "start": self.start.model_dump() if self.start is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], path: Path) -> TemplateInfo:
        parent = data.get("parent_dir")
        return cls(
            name=data["name"],
            type=data["type"],
            platform=bool(data["platform"]),
            path=path,
            team_id=data.get("team_id"),
            vcpus=data.get("vcpus"),
            memory_mb=data.get("memory_mb"),
            size_bytes=int(data.get("size_bytes", 0)),
            created_at=data["created_at"],
            recipe_hash=data.get("recipe_hash"),
            runtime=data.get("runtime"),
            parent_dir=Path(parent) if parent else None,
            metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
            default_user=data.get("default_user") or None,
            start=StartCommand.model_validate(data["start"]) if data.get("start") else None,
        )


def read_info(template_dir: Path) -> TemplateInfo:
    with open(template_dir / METADATA_FILE) as f:
        return TemplateInfo.from_json(json.load(f), template_dir)


def write_info(info: TemplateInfo) -> None:
    """Write `template.json` into `info.path` (atomically: temp file, fsync, rename)."""
    target = info.path / METADATA_FILE
    tmp = target.with_name(f".{METADATA_FILE}.{uuid.uuid4().hex}")
    with open(tmp, "w") as f:
        json.dump(info.to_json(), f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def tree_size(path: Path) -> int:
    """Bytes used by the regular files under `path`, each hard-linked inode counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for filename in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, filename))
            except FileNotFoundError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_blocks * 512
    return total


def platform_template_dir(cache_dir: Path, name: str) -> Path:
    """The directory holding every build of the platform template `name`."""
    return cache_dir / "templates" / name


class PendingTemplate:
    """A snapshot template being written: the runtime fills `path`, then `commit` renames it in."""

    def __init__(self, path: Path, final: Path, info: TemplateInfo, replace: bool) -> None:
        self.path = path
        self.final = final
        self._info = info
        self._replace = replace
        self.committed: TemplateInfo | None = None

    def commit(self) -> TemplateInfo:
        info = dataclasses.replace(self._info, path=self.final, size_bytes=tree_size(self.path))
        write_info(dataclasses.replace(info, path=self.path))
        trash: Path | None = None
        if self.final.exists():
            if not self._replace:
                self.abort()
                raise TemplateExists(f"template {info.name!r} already exists for team {info.team_id}")
            trash = self.final.with_name(f".trash-{self.final.name}-{uuid.uuid4().hex[:8]}")
            os.rename(self.final, trash)
        os.rename(self.path, self.final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        self.committed = info
        return info

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class TemplateStore:
    """Resolves, lists, creates and deletes templates. Cheap to construct; holds no state."""

    def __init__(self, data_dir: Path = DEFAULT_DATA_DIR, cache_dir: Path = DEFAULT_CACHE_DIR) -> None:
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir)

    # -- lookups --------------------------------------------------------------------------------

    def team_dir(self, team_id: str) -> Path:
        return self.data_dir / "templates" / validate_team_id(team_id)

    def resolve(self, name: str, team_id: str | None = None) -> TemplateInfo:
        """The template `name` as seen by `team_id`: a platform template, or one of the team's."""
        validate_name(name)
        if name in PLATFORM_TEMPLATE_NAMES:
            current = platform_template_dir(self.cache_dir, name) / CURRENT_LINK
            if not (current / METADATA_FILE).is_file():
                raise TemplateNotFound(
                    f"platform template {name!r} is not built on this host: run `wrenn template build {name}`"
                )
            return read_info(current.resolve())
        if team_id is not None:
            template_dir = self.team_dir(team_id) / name
            if (template_dir / METADATA_FILE).is_file():
                return read_info(template_dir)
        raise TemplateNotFound(f"template {name!r} not found")

    def list(self, team_id: str | None = None) -> list[TemplateInfo]:
        """Platform templates that are built, then `team_id`'s templates (all teams' when None)."""
        found: list[TemplateInfo] = []
        for name in sorted(PLATFORM_TEMPLATE_NAMES):
            with contextlib.suppress(TemplateNotFound):
                found.append(self.resolve(name))
        teams_root = self.data_dir / "templates"
        team_dirs = [self.team_dir(team_id)] if team_id is not None else sorted(teams_root.glob("*"))
        for team_dir in team_dirs:
            if not team_dir.is_dir() or team_dir.name.startswith("."):
                continue
            for template_dir in sorted(team_dir.iterdir()):
                if template_dir.name.startswith(".") or not (template_dir / METADATA_FILE).is_file():
                    continue
                found.append(read_info(template_dir))
        return found

    # -- snapshots ------------------------------------------------------------------------------

    def begin_snapshot(
        self,
        team_id: str,
        name: str,
        *,
        runtime: str,
        parent: TemplateInfo,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        metadata: dict[str, str] | None = None,
        replace: bool = False,
        start: StartCommand | None = None,
    ) -> PendingTemplate:
        """Start writing a snapshot template: returns an empty hidden directory on the final
        file system. Fill `pending.path`, then `pending.commit()` (or `abort()`).

        The snapshot runs `start` if given, else its parent's start command."""
        validate_name(name)
        if name in PLATFORM_TEMPLATE_NAMES:
            raise InvalidTemplateName(f"template name {name!r} is reserved for a platform template")
        team_dir = self.team_dir(team_id)
        final = team_dir / name
        if final.exists() and not replace:
            raise TemplateExists(f"template {name!r} already exists for team {team_id}")
        team_dir.mkdir(parents=True, exist_ok=True)
        tmp = team_dir / f".tmp-{name}-{uuid.uuid4().hex[:12]}"
        tmp.mkdir(mode=0o700)
        info = TemplateInfo(
            name=name,
            type="snapshot",
            platform=False,
            path=final,
            team_id=team_id,
            vcpus=vcpus,
            memory_mb=memory_mb,
            recipe_hash=parent.recipe_hash,
            runtime=runtime,
            parent_dir=parent.path,
            metadata=dict(metadata or {}),
            start=start or parent.start,
        )
        return PendingTemplate(tmp, final, info, replace)

    @contextlib.contextmanager
    def snapshot_dir(
        self,
        team_id: str,
        name: str,
        *,
        runtime: str,
        parent: TemplateInfo,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        metadata: dict[str, str] | None = None,
        replace: bool = False,
        start: StartCommand | None = None,
    ) -> Iterator[PendingTemplate]:
        """`with store.snapshot_dir(...) as pending: await runtime.snapshot(id, pending.path)`.

        On a normal exit the template is committed (`pending.committed` holds its info); on an
        exception nothing is left behind.
        """
        pending = self.begin_snapshot(
            team_id,
            name,
            runtime=runtime,
            parent=parent,
            vcpus=vcpus,
            memory_mb=memory_mb,
            metadata=metadata,
            replace=replace,
            start=start,
        )
        try:
            yield pending
        except BaseException:
            pending.abort()
            raise
        pending.commit()

    def delete(self, team_id: str, name: str) -> None:
        """Delete a team template. Platform templates are rebuilt, not deleted, through here."""
        validate_name(name)
        if name in PLATFORM_TEMPLATE_NAMES:
            raise InvalidTemplateName(f"{name!r} is a platform template and cannot be deleted")
        template_dir = self.team_dir(team_id) / name
        if not (template_dir / METADATA_FILE).is_file():
            raise TemplateNotFound(f"template {name!r} not found for team {team_id}")
        children = [t.name for t in self.list() if t.parent_dir == template_dir]
        if children:
            raise TemplateInUse(f"template {name!r} is the parent of {', '.join(sorted(children))}: delete those first")
        # Rename first so a half-deleted directory never looks like a template.
        trash = template_dir.with_name(f".trash-{name}-{uuid.uuid4().hex[:8]}")
        os.rename(template_dir, trash)
        shutil.rmtree(trash)
