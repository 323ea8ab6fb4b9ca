"""Which capsule runtime this host runs, and building it.

`auto` picks microvm only when the CPU shows hardware virtualization (`vmx`/`svm`) and the microvm
driver is installed (QEMU and a guest kernel); namespace otherwise. (`/dev/kvm` alone proves
nothing: on these machines it is a paravirtual nested KVM that cannot boot a stock kernel.)
"""

from __future__ import annotations

import logging
from pathlib import Path

from wrenn_platform.host_agent.runtime.base import Runtime

log = logging.getLogger(__name__)

RUNTIME_CHOICES = ("auto", "namespace", "microvm")


def cpu_has_virtualization(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            if flags & {"vmx", "svm"}:
                return True
    return False


def microvm_driver_available() -> bool:
    try:
        from wrenn_platform.host_agent.runtime.microvm import microvm_available
    except ImportError:
        return False
    return microvm_available()


def resolve_runtime_name(name: str) -> tuple[str, str]:
    """(runtime, why) for a configured name."""
    if name not in RUNTIME_CHOICES:
        raise ValueError(f"unknown runtime {name!r}; one of {', '.join(RUNTIME_CHOICES)}")
    if name != "auto":
        return name, "configured"
    if not cpu_has_virtualization():
        return "namespace", "auto: the CPU shows no vmx/svm (no usable hardware virtualization)"
    if not microvm_driver_available():
        return "namespace", "auto: hardware virtualization present but the microvm driver is not installed"
    return "microvm", "auto: hardware virtualization and the microvm driver are present"


def build_runtime(name: str, data_dir: Path, cache_dir: Path) -> Runtime:
    """The runtime `name` ("namespace" or "microvm", already resolved) with its state under data_dir."""
    if name == "namespace":
        from wrenn_platform.host_agent.runtime.namespace.runtime import NamespaceRuntime

        return NamespaceRuntime(data_dir / "namespace")
    if name == "microvm":
        from wrenn_platform.host_agent.runtime.microvm import MicrovmRuntime

        return MicrovmRuntime(state_root=data_dir / "microvm", cache_dir=cache_dir / "microvm")
    raise ValueError(f"cannot build runtime {name!r}")
