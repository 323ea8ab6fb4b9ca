"""The microvm runtime: one QEMU `microvm` virtual machine per capsule, with snapshots.

Construct it with a plain constructor and hand it to the agent like any `Runtime`::

    from wrenn_platform.host_agent.runtime.microvm import MicrovmRuntime

    runtime = MicrovmRuntime()  # state under /var/lib/wrenn/microvm, caches under /var/cache/wrenn/microvm
    runtime = MicrovmRuntime(state_root=Path(...), cache_dir=Path(...), accel="auto")  # or "kvm"/"tcg"

`accel="auto"` picks KVM only when the CPU shows `vmx`/`svm` and `/dev/kvm` is usable, TCG
otherwise (logged; in each capsule's `metadata["accel"]`). `microvm_available()` tells the
agent's `--runtime auto` whether this host can run the driver at all, and `kvm_usable()` whether it
would run fast (the `auto` policy picks microvm only then).

Per capsule, under `<state_root>/capsules/<capsule_id>/` (root-only): `capsule.json` (what
`adopt` needs), `memory` (guest RAM file), `disk.qcow2` (overlay), `state` (device state while
paused), `qmp.sock`, `console.log`, `qemu.log`. A snapshot template written by `snapshot()`
holds `memory`, `state`, `disk.qcow2` (flattened) and `microvm.json`; `create()` with such a
template restores a clone of it instead of booting.

Caches under `cache_dir`: `kernel/<version>/vmlinux` (uncompressed, from /boot/vmlinuz-*),
`initramfs/<version>-<hash>.cpio`, `base/<template-key>-<size>M.ext4`.
"""

from __future__ import annotations

import shutil

from . import accel as _accel
from .runtime import MicrovmRuntime


def microvm_available() -> bool:
    """QEMU and a guest kernel are installed (the driver works here, maybe slowly under TCG)."""
    from . import kernel

    return shutil.which("qemu-system-x86_64") is not None and bool(kernel.installed_versions())


def kvm_usable() -> bool:
    return _accel.detect().name == "kvm"


__all__ = ["MicrovmRuntime", "kvm_usable", "microvm_available"]
