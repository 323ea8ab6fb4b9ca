"""Pick the accelerator: KVM only where the CPU exposes hardware virtualization.

`/dev/kvm` alone proves nothing: some clouds expose a paravirtual nested KVM that cannot boot a
stock kernel (it hangs after "Probing EDD"). The `vmx`/`svm` CPU flag is the reliable signal.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accel:
    name: str  # "kvm" | "tcg"
    reason: str


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def detect(cpuinfo: Path = Path("/proc/cpuinfo"), kvm_dev: Path = Path("/dev/kvm")) -> Accel:
    flags = cpu_flags(cpuinfo)
    hw = sorted(flags & {"vmx", "svm"})
    if not hw:
        accel = Accel("tcg", "CPU has no vmx/svm flag (no usable hardware virtualization)")
    elif not kvm_dev.exists() or not os.access(kvm_dev, os.R_OK | os.W_OK):
        accel = Accel("tcg", f"CPU has {hw[0]} but {kvm_dev} is not usable")
    else:
        accel = Accel("kvm", f"CPU has {hw[0]} and {kvm_dev} is usable")
    log.info("microvm accelerator: %s (%s)", accel.name, accel.reason)
    return accel


def host_tsc_khz(cpuinfo: Path = Path("/proc/cpuinfo")) -> int:
    """The host's TSC frequency in kHz, for `tsc_early_khz=` (microvm has no HPET/PM timer)."""
    tsc = Path("/sys/devices/system/cpu/cpu0/tsc_freq_khz")
    if tsc.exists():
        return int(tsc.read_text().strip())
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("cpu MHz"):
            return int(float(line.split(":", 1)[1]) * 1000)
    raise RuntimeError("cannot determine the host TSC frequency")
