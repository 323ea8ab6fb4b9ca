"""Each VM's QEMU in a cgroup of its own, through the namespace runtime's cgroup helper.

Same place and name as a namespace capsule's (`wrenn/<capsule_id>` per v1 controller, or the
unified tree): one listing of every capsule's cgroup on the host, whichever runtime made it. The
QEMU process is born inside (the pid is written before exec), so every thread and every page it
touches is charged there. Created on the first start, kept while the VM is paused (empty) and
across an agent restart, removed on destroy.

Limits:
- memory: guest RAM + the VMM's own overhead. Guest RAM is a shared mapping of the capsule's
  memory file, charged as page cache (dirty pages are written back to the file under pressure
  rather than the VM being killed); the overhead is QEMU's heap, its devices and, under TCG, the
  translation cache (measured: see `VMM_OVERHEAD_MB`);
- CPU: a CFS quota of `vcpus` cores (the vCPU threads; QEMU's main loop shares it);
- pids: QEMU's threads (main loop, RCU, one per vCPU, its I/O worker pool of up to 64).
"""

from __future__ import annotations

from ..namespace import cgroups
from .state import VmShape

# What QEMU adds on top of guest RAM: peak cgroup usage minus guest RAM seen during boot, clone
# and a guest filling its RAM, rounded up with headroom (TCG: 32 MiB translation cache + code
# buffers; KVM has neither).
VMM_OVERHEAD_MB = {"tcg": 192, "kvm": 128}
PIDS_MAX = 128


def limits(shape: VmShape) -> cgroups.Limits:
    overhead = VMM_OVERHEAD_MB.get(shape.accel, max(VMM_OVERHEAD_MB.values()))
    return cgroups.Limits(vcpus=shape.vcpus, memory_mb=shape.memory_mb + overhead, pids=PIDS_MAX)


def ensure(capsule_id: str, shape: VmShape) -> cgroups.Cgroup:
    """The VM's cgroup, created with its limits unless it exists (a resume, or after adoption)."""
    cg = cgroups.Cgroup(capsule_id)
    if all(d.is_dir() for d in cg.dirs.values()):
        return cg
    if cg.exists():  # half made (the agent died creating it): start over
        cg.remove()
    cg.create(limits(shape))
    return cg


def set_cpu_weight(capsule_id: str, weight: int) -> None:
    cgroups.Cgroup(capsule_id).set_cpu_weight(weight)


def remove(capsule_id: str) -> None:
    """Kill whatever is left inside (a QEMU the runtime lost track of) and remove the cgroup."""
    cg = cgroups.Cgroup(capsule_id)
    if cg.exists():
        cg.kill_all()
        cg.remove()
