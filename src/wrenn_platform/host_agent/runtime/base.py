"""The one interface every capsule runtime implements (namespace, microvm).

The host agent talks to capsules only through this interface and through envd (inside the
capsule, reached at `RunningCapsule.envd_url`). Runtimes own everything below: processes, disks,
memory files, cgroups. Network slots are allocated by the agent and handed to the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class NetworkSlot:
    """A numbered network slot: its own netns, a veth to the host, and two addresses."""

    index: int
    netns: str  # name under /run/netns
    host_ip: str  # the address the host uses to reach the capsule (envd listens behind it)
    guest_ip: str  # the address the capsule sees on its eth0
    gateway_ip: str  # the capsule's default route (host end of the veth)
    prefix_len: int
    host_iface: str  # host-side veth name
    dns_servers: tuple[str, ...] = ()  # resolvers the capsule may use (reached through NAT)


# Capsule root is an unprivileged host uid (namespace) or the guest's root (microvm), so root is a
# safe default, and what the upstream envd and the published client's helpers expect (/root).
DEFAULT_USER = "root"


@dataclass(frozen=True)
class CapsuleSpec:
    capsule_id: str
    template: str  # template name, e.g. "minimal" or a snapshot name
    template_dir: Path  # resolved on-disk template directory
    vcpus: int
    memory_mb: int
    disk_size_mb: int
    envd_access_token: str
    env_vars: dict[str, str] = field(default_factory=dict)
    default_user: str = DEFAULT_USER


@dataclass
class RunningCapsule:
    capsule_id: str
    runtime: str  # "namespace" | "microvm"
    slot: NetworkSlot
    envd_url: str  # e.g. http://10.11.0.2:49983
    state_dir: Path  # everything this capsule owns on disk
    metadata: dict[str, str] = field(default_factory=dict)  # kernel_version, vmm_version, ...


@dataclass(frozen=True)
class ResourceSample:
    cpu_seconds: float  # cumulative CPU time used by the capsule
    memory_bytes: int
    disk_bytes: int


class RuntimeError_(Exception):
    """A runtime operation failed; the message is safe to show to the capsule's owner."""


class Runtime(Protocol):
    name: str

    async def create(self, spec: CapsuleSpec, slot: NetworkSlot) -> RunningCapsule:
        """Start a capsule (boot, or restore when the template is a snapshot); envd ready on return.

        On failure everything created so far is removed before the exception propagates.
        """
        ...

    async def destroy(self, capsule_id: str) -> None:
        """Remove every process, mount, cgroup and file of the capsule. Idempotent."""
        ...

    async def pause(self, capsule_id: str) -> None: ...

    async def resume(self, capsule_id: str) -> RunningCapsule: ...

    async def snapshot(self, capsule_id: str, dest_template_dir: Path) -> None:
        """Write a template from a running capsule that keeps running afterwards."""
        ...

    async def adopt(self, state_dir: Path) -> RunningCapsule | None:
        """Re-attach to a capsule left running by a previous agent process (None: cannot)."""
        ...

    def sample(self, capsule_id: str) -> ResourceSample: ...

    def alive(self, capsule_id: str) -> bool:
        """Whether the capsule still exists as this runtime left it: a running one's process lives,
        a paused one can still be resumed. Asked every tick by the agent's crash watcher; False for a
        capsule this runtime does not know."""
        ...
