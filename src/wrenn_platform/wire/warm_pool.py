"""Warm pools: which create requests a host keeps capsules ready for, as both sides name them.

A pool key is the part of a create request that decides how a capsule is started: template,
vCPUs, memory and disk. The sizes are written `template:vcpus:memory_mb:disk_size_mb=N`, comma
separated (`WRENN_WARM_POOLS`); the default create request's pool is sized alone
(`WRENN_WARM_POOL_SIZE`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel


class PoolSpecError(ValueError):
    """A pool size setting that cannot be read; the message says which part and why."""


@dataclass(frozen=True, order=True)
class PoolKey:
    template: str
    vcpus: int
    memory_mb: int
    disk_size_mb: int

    def __str__(self) -> str:
        return f"{self.template}:{self.vcpus}:{self.memory_mb}:{self.disk_size_mb}"

    @classmethod
    def parse(cls, text: str) -> PoolKey:
        parts = text.strip().split(":")
        if len(parts) != 4 or not parts[0]:
            raise PoolSpecError(f"pool key {text!r} is not template:vcpus:memory_mb:disk_size_mb")
        try:
            vcpus, memory_mb, disk_size_mb = (int(p) for p in parts[1:])
        except ValueError:
            raise PoolSpecError(f"pool key {text!r}: vcpus, memory_mb and disk_size_mb are integers") from None
        if vcpus < 1 or memory_mb < 64 or disk_size_mb < 16:
            raise PoolSpecError(f"pool key {text!r}: needs vcpus >= 1, memory_mb >= 64, disk_size_mb >= 16")
        return cls(parts[0], vcpus, memory_mb, disk_size_mb)


# What `POST /v1/capsules` with an empty body asks for (the contract's defaults).
DEFAULT_POOL_KEY = PoolKey("minimal", 1, 512, 5120)


def pool_sizes(default_size: int, others: str = "") -> dict[PoolKey, int]:
    """The pools a host keeps: the default request's (`default_size`) and the `others` spec.
    Sizes of 0 are left out (no pool)."""
    if default_size < 0:
        raise PoolSpecError(f"warm pool size {default_size} is negative")
    sizes = {DEFAULT_POOL_KEY: default_size}
    for item in filter(None, (part.strip() for part in others.split(","))):
        key_text, sep, size_text = item.rpartition("=")
        if not sep:
            raise PoolSpecError(f"warm pool {item!r} is not template:vcpus:memory_mb:disk_size_mb=N")
        try:
            size = int(size_text)
        except ValueError:
            raise PoolSpecError(f"warm pool {item!r}: the size {size_text!r} is not an integer") from None
        if size < 0:
            raise PoolSpecError(f"warm pool {item!r}: the size is negative")
        sizes[PoolKey.parse(key_text)] = size
    return {key: size for key, size in sizes.items() if size > 0}


class WarmPoolInfo(BaseModel):
    """One pool of a host, as its agent reports it (`AgentInfo.warm_pools`)."""

    template: str
    vcpus: int
    memory_mb: int
    disk_size_mb: int
    size: int  # capsules it is kept at
    ready: int  # started, unclaimed
    starting: int  # being started by the refill
    claimed_total: int = 0  # claims served since the agent started
    missed_total: int = 0  # claims asked for this key while it had none ready
    last_error: str = ""  # why the last refill start failed ("" once one succeeds)

    @property
    def key(self) -> PoolKey:
        return PoolKey(self.template, self.vcpus, self.memory_mb, self.disk_size_mb)
