"""The one rule for a capsule id, checked by the host agent before anything is created.

A capsule's id is also its hostname, its cgroup's name and part of its VM's name, so it is held to
a hostname label: at most 63 characters."""

from __future__ import annotations

import re

CAPSULE_ID_MAX = 63
CAPSULE_ID_RULE = f"1-{CAPSULE_ID_MAX} of A-Z a-z 0-9 _ -, starting with a letter or digit"
_CAPSULE_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{CAPSULE_ID_MAX - 1}}}")


def is_capsule_id(value: str) -> bool:
    return _CAPSULE_ID.fullmatch(value) is not None
