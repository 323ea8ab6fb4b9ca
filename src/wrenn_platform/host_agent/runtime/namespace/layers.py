"""Which directories make up a capsule's root, from its template directory.

A base template is `<dir>/rootfs`. A snapshot written by this runtime is `<dir>/upper` layered on
its parent template (recursively), as recorded in `<dir>/template.json` (`runtime`, `parent_dir`).
Snapshot uppers are stored with capsule-relative owners (0 = root), like base trees.
"""

from __future__ import annotations

import json
from pathlib import Path

MAX_DEPTH = 32  # overlayfs' own limit on lower layers is higher; keep chains short


class BadTemplate(Exception):
    pass


def template_layers(template_dir: Path) -> list[Path]:
    """Lower layers, topmost first."""
    layers: list[Path] = []
    current: Path | None = template_dir
    while current is not None:
        if len(layers) >= MAX_DEPTH:
            raise BadTemplate(f"template chain too deep at {current}")
        info: dict[str, object] = {}
        meta = current / "template.json"
        if meta.is_file():
            try:
                info = json.loads(meta.read_text())
            except ValueError as exc:
                raise BadTemplate(f"unreadable {meta}: {exc}") from None
        if info.get("type") == "snapshot":
            if info.get("runtime") not in (None, "namespace"):
                raise BadTemplate(f"{current} is a snapshot of the {info.get('runtime')} runtime")
            upper = current / "upper"
            if not upper.is_dir():
                raise BadTemplate(f"snapshot template {current} has no upper/")
            layers.append(upper)
            parent = info.get("parent_dir")
            if not isinstance(parent, str):
                raise BadTemplate(f"snapshot template {current} has no parent_dir")
            current = Path(parent)
            continue
        rootfs = current / "rootfs"
        if not (rootfs / "usr").is_dir():
            raise BadTemplate(f"template {current} has no rootfs/ tree")
        layers.append(rootfs)
        current = None
    return layers
