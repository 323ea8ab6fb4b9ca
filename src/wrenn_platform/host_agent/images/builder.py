"""Builds platform templates into the cache, layer by layer, atomically, reusing what is cached.

Cache layout (all under `cache_dir`, default /var/cache/wrenn)::

    debs/                                  .debs downloaded by debootstrap, reused by every build
    layers/<name>-base/<base-hash>/        slow layer: debootstrap + configuration
        rootfs/  layer.json
    templates/<name>/<recipe-hash>/        finished template: base (hard links) + envd
        rootfs/  template.json
    templates/<name>/current -> <recipe-hash>
    logs/<name>-<time>.log                 one log per build that did work
    locks/                                 one build of a name at a time, one debootstrap at a time

`<recipe-hash>` covers the base recipe and the envd layer (envd's source and launcher), so any
change yields a new directory; an unchanged recipe finds its directory and does nothing. Every
directory is built under a `.tmp-` name and renamed into place when complete.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from wrenn_platform.host_agent.images.debootstrap import BuildError, configure, debootstrap
from wrenn_platform.host_agent.images.envd_layer import DEFAULT_ENVD_SOURCE, envd_hash, install_envd
from wrenn_platform.host_agent.images.progress import Reporter, SilentReporter
from wrenn_platform.host_agent.images.recipe import ENVD_LAUNCHER, PLATFORM_RECIPES, BaseRecipe, ImageFile
from wrenn_platform.host_agent.templates import (
    CURRENT_LINK,
    DEFAULT_CACHE_DIR,
    METADATA_FILE,
    ROOTFS_DIR,
    TemplateInfo,
    platform_template_dir,
    read_info,
    tree_size,
    write_info,
)

LAYER_FILE = "layer.json"
_HASH_LEN = 16
_LOG_TAIL_LINES = 25


@dataclass(frozen=True)
class BuildResult:
    info: TemplateInfo
    built_base: bool  # the slow layer was (re)built
    built_template: bool  # the envd layer was (re)built
    seconds: float
    log_path: Path | None  # None when nothing was built


def recipe_for(name: str) -> BaseRecipe:
    try:
        return PLATFORM_RECIPES[name]
    except KeyError:
        known = ", ".join(sorted(PLATFORM_RECIPES))
        raise BuildError(f"unknown platform template {name!r} (known: {known})") from None


def base_hash(recipe: BaseRecipe) -> str:
    return recipe.hash()[:_HASH_LEN]


def template_hash(recipe: BaseRecipe, envd_source: Path = DEFAULT_ENVD_SOURCE) -> str:
    blob = f"{recipe.hash()}\0{envd_hash(envd_source)}".encode()
    if recipe.start is not None:  # absent for templates without one, so their hash did not move
        blob += b"\0" + recipe.start.model_dump_json().encode()
    for extra in recipe.layer_files:
        blob += f"\0{extra.path}\0{extra.mode}\0".encode() + extra.content.encode()
    return hashlib.sha256(blob).hexdigest()[:_HASH_LEN]


def base_layer_dir(cache_dir: Path, recipe: BaseRecipe) -> Path:
    return cache_dir / "layers" / f"{recipe.base_recipe.name}-base" / base_hash(recipe)


# -- helpers ------------------------------------------------------------------------------------


@contextmanager
def _locked(path: Path, reporter: Reporter, what: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            reporter.note(f"waiting for another {what} to finish (lock {path})")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(prefix)]


def remove_tree(path: Path) -> None:
    """Remove a build directory, refusing if anything is still mounted inside it."""
    if path.is_symlink():
        path.unlink()
        return
    if not path.exists():
        return
    mounts = _mounts_under(path)
    if mounts:
        raise BuildError(f"cannot remove {path}: still mounted inside it: {', '.join(mounts)}")
    shutil.rmtree(path)


def _clean_stale(parent: Path) -> None:
    """Remove unfinished directories left by crashed builds (callers hold the build lock)."""
    if parent.is_dir():
        for entry in parent.iterdir():
            # .tmp-link-* are symlinks being swapped in by a lock-free fast path: not stale.
            if entry.name.startswith((".tmp-", ".trash-")) and not entry.name.startswith(".tmp-link-"):
                remove_tree(entry)


def _swap_into_place(tmp: Path, final: Path) -> None:
    trash: Path | None = None
    if final.exists():
        trash = final.with_name(f".trash-{final.name}-{uuid.uuid4().hex[:8]}")
        os.rename(final, trash)
    os.rename(tmp, final)
    if trash is not None:
        remove_tree(trash)


def _point_current(template_root: Path, target_name: str) -> None:
    link = template_root / CURRENT_LINK
    if link.is_symlink() and os.readlink(link) == target_name:
        return
    tmp = template_root / f".tmp-link-{uuid.uuid4().hex[:8]}"
    os.symlink(target_name, tmp)
    os.replace(tmp, link)


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _check_host() -> None:
    if os.geteuid() != 0:
        raise BuildError("building a template needs root (debootstrap, chroot): run it with sudo or as root")
    for tool in ("debootstrap", "unshare", "chroot"):
        if shutil.which(tool) is None:
            raise BuildError(f"{tool} not found: run scripts/install-system-deps (as root) first")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- layers -------------------------------------------------------------------------------------


def build_base(
    recipe: BaseRecipe, cache_dir: Path, log: IO[str], reporter: Reporter, force: bool = False
) -> tuple[Path, bool]:
    """The base layer directory for `recipe`, built if missing (or forced). Returns (dir, built)."""
    final = base_layer_dir(cache_dir, recipe)
    if (final / LAYER_FILE).is_file() and not force:
        return final, False
    with _locked(cache_dir / "locks" / "debootstrap.lock", reporter, "debootstrap"):
        if (final / LAYER_FILE).is_file() and not force:
            return final, False
        _clean_stale(final.parent)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
        tmp.mkdir()
        rootfs = tmp / ROOTFS_DIR
        try:
            try:
                debootstrap(recipe, rootfs, cache_dir / "debs", log, reporter)
            except subprocess.CalledProcessError:
                inner_log = rootfs / "debootstrap" / "debootstrap.log"
                if inner_log.is_file():
                    log.write("\n--- debootstrap.log ---\n" + inner_log.read_text(errors="replace"))
                raise
            configure(recipe, rootfs, log, reporter)
            layer = {"recipe_hash": recipe.hash(), "created_at": _now(), "recipe": recipe.base_data()}
            (tmp / LAYER_FILE).write_text(json.dumps(layer, indent=2, sort_keys=True) + "\n")
            _swap_into_place(tmp, final)
        except BaseException:
            remove_tree(tmp)
            raise
    return final, True


def assemble_template(
    recipe: BaseRecipe,
    base_dir: Path,
    template_root: Path,
    envd_source: Path = DEFAULT_ENVD_SOURCE,
    reporter: Reporter | None = None,
    force: bool = False,
) -> tuple[TemplateInfo, bool]:
    """The cheap layer: base tree (hard links) plus envd, as `<template_root>/<recipe-hash>/`.

    Returns (info, built). Callers hold the template's build lock.
    """
    reporter = reporter or SilentReporter()
    digest = template_hash(recipe, envd_source)
    final = template_root / digest
    if (final / METADATA_FILE).is_file() and not force:
        _point_current(template_root, digest)
        return read_info(final), False
    template_root.mkdir(parents=True, exist_ok=True)
    _clean_stale(template_root)
    tmp = template_root / f".tmp-{digest}-{os.getpid()}"
    tmp.mkdir()
    try:
        reporter.phase("linking the base tree")
        # Hard links: instant and almost free on disk. The envd layer only adds files, and
        # templates are read-only to runtimes, so sharing inodes with the base layer is safe.
        subprocess.run(
            ["cp", "-a", "--link", str(base_dir / ROOTFS_DIR), str(tmp / ROOTFS_DIR)],
            check=True,
            capture_output=True,
            text=True,
        )
        reporter.phase("installing envd")
        install_envd(tmp / ROOTFS_DIR, envd_source)
        for extra in recipe.layer_files:
            _write_layer_file(tmp / ROOTFS_DIR, extra)
        reporter.phase("writing metadata")
        info = TemplateInfo(
            name=recipe.name,
            type="base",
            platform=True,
            path=tmp,
            vcpus=recipe.vcpus,
            memory_mb=recipe.memory_mb,
            size_bytes=tree_size(tmp / ROOTFS_DIR),
            recipe_hash=digest,
            metadata={
                **recipe.labels,
                "base_hash": base_hash(recipe),
                "base_layer": str(base_dir),
                "envd_hash": envd_hash(envd_source)[:_HASH_LEN],
                "envd_launcher": ENVD_LAUNCHER,
            },
            start=recipe.start,
        )
        write_info(info)
        _swap_into_place(tmp, final)
    except subprocess.CalledProcessError as exc:
        remove_tree(tmp)
        output = (exc.stdout or b"") + (exc.stderr or b"")
        text = output.decode(errors="replace") if isinstance(output, bytes) else output
        raise BuildError(f"envd layer failed: {' '.join(map(str, exc.cmd))}: {text.strip()}") from exc
    except BaseException:
        remove_tree(tmp)
        raise
    _point_current(template_root, digest)
    return read_info(final), True


def _write_layer_file(rootfs: Path, extra: ImageFile) -> None:
    """A recipe's own file on top of the shared base tree: unlinked first, so a hard link into the
    base layer is replaced, never written through."""
    target = rootfs / extra.path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    target.write_text(extra.content)
    target.chmod(extra.mode)


# -- the whole build ----------------------------------------------------------------------------


def build_template(
    name: str = "minimal",
    cache_dir: Path = DEFAULT_CACHE_DIR,
    *,
    envd_source: Path = DEFAULT_ENVD_SOURCE,
    force: bool = False,
    reporter: Reporter | None = None,
) -> BuildResult:
    """Build (or find in the cache) the platform template `name`; returns its info.

    Idempotent: with nothing changed it only reads `template.json` (milliseconds). Raises
    BuildError with a log path when a build fails; a failed build leaves no finished-looking
    directory and does not move `current`.
    """
    started = time.monotonic()
    reporter = reporter or SilentReporter()
    recipe = recipe_for(name)
    cache_dir = Path(cache_dir)
    template_root = platform_template_dir(cache_dir, name)
    if not force:
        final = template_root / template_hash(recipe, envd_source)
        if (final / METADATA_FILE).is_file() and (final / ROOTFS_DIR).is_dir():
            _point_current(template_root, final.name)
            reporter.note(f"{name}: up to date ({final})")
            return BuildResult(read_info(final), False, False, time.monotonic() - started, None)
    _check_host()
    log_dir = cache_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    with (
        _locked(cache_dir / "locks" / f"{name}.lock", reporter, f"build of {name}"),
        open(log_path, "w") as log,
    ):
        log.write(f"wrenn template build {name} at {_now()}\n")
        try:
            base_dir, built_base = build_base(recipe.base_recipe, cache_dir, log, reporter, force=force)
            log.write(f"base layer: {base_dir} ({'built' if built_base else 'cached'})\n")
            info, built = assemble_template(
                recipe, base_dir, template_root, envd_source, reporter, force=force or built_base
            )
            log.write(f"template: {info.path} ({'built' if built else 'cached'})\n")
        except subprocess.CalledProcessError as exc:
            log.write(f"FAILED: {exc}\n")
            log.flush()
            raise BuildError(
                f"building template {name!r} failed: `{' '.join(map(str, exc.cmd))}` exited with "
                f"{exc.returncode}. Full log: {log_path}\n{_tail(log_path)}",
                log_path,
            ) from exc
        except (BuildError, OSError) as exc:
            log.write(f"FAILED: {exc}\n")
            raise BuildError(f"building template {name!r} failed: {exc}. Full log: {log_path}", log_path) from exc
    reporter.note(f"{name}: built {info.path}")
    return BuildResult(info, built_base, built, time.monotonic() - started, log_path)


# -- pruning ------------------------------------------------------------------------------------


def prune(
    name: str,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    *,
    keep: int = 3,
    referenced: Iterable[Path] = (),
    keep_logs: int = 20,
    reporter: Reporter | None = None,
) -> list[Path]:
    """Remove old builds of the platform template `name`; returns what was removed.

    Kept: `current`, the `keep` newest builds, every build in `referenced` (the parents of
    snapshot templates, whose runtimes may still need their rootfs), the base layers that a kept
    build was made from, and the newest `keep_logs` logs.
    """
    reporter = reporter or SilentReporter()
    recipe = recipe_for(name)
    cache_dir = Path(cache_dir)
    template_root = platform_template_dir(cache_dir, name)
    removed: list[Path] = []
    with _locked(cache_dir / "locks" / f"{name}.lock", reporter, f"build of {name}"):
        builds = sorted(
            (d for d in template_root.glob("*") if not d.is_symlink() and (d / METADATA_FILE).is_file()),
            key=lambda d: (d / METADATA_FILE).stat().st_mtime,
            reverse=True,
        )
        current = template_root / CURRENT_LINK
        protected = {p.resolve() for p in referenced}
        if current.is_symlink():
            protected.add(current.resolve())
        kept = [d for i, d in enumerate(builds) if i < keep or d.resolve() in protected]
        for build in builds:
            if build not in kept:
                remove_tree(build)
                removed.append(build)
        kept_layers = {base_layer_dir(cache_dir, recipe).resolve()}
        for build in kept:
            layer = read_info(build).metadata.get("base_layer")
            if layer:
                kept_layers.add(Path(layer).resolve())
        layers_root = base_layer_dir(cache_dir, recipe).parent
        with _locked(cache_dir / "locks" / "debootstrap.lock", reporter, "debootstrap"):
            for layer_dir in sorted(layers_root.glob("*")):
                if not layer_dir.name.startswith(".") and layer_dir.resolve() not in kept_layers:
                    remove_tree(layer_dir)
                    removed.append(layer_dir)
        logs = sorted((cache_dir / "logs").glob(f"{name}-*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
        for log in logs[keep_logs:]:
            log.unlink()
            removed.append(log)
    return removed
