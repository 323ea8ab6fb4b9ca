"""Which capsule runtime this host runs, and building it.

`auto` picks microvm only when the CPU shows hardware virtualization (`vmx`/`svm`) and the microvm
driver is installed (QEMU and a guest kernel); namespace otherwise. (`/dev/kvm` alone proves
nothing: on these machines it is a paravirtual nested KVM that cannot boot a stock kernel.)
"""

from __future__ import annotations

import logging
import stat
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


class CapsulePathError(ValueError):
    """Capsule processes (bwrap, QEMU) could not reach their files under the agent's directories."""


def _untraversable(path: Path) -> Path | None:
    """The first existing directory on the way to `path` (itself included) that other users may
    not enter; None when every existing one lets them through."""
    current = Path("/")
    for part in path.absolute().parts[1:]:
        current = current / part
        try:
            mode = current.stat().st_mode
        except FileNotFoundError:
            return None  # created later with the process's umask: build_runtime checks again then
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return current
    return None


def check_capsule_paths(name: str, data_dir: Path, cache_dir: Path) -> None:
    """Refuse, naming the path and the fix, a data (or, for microvm, cache) directory that the
    capsules' unprivileged host uids cannot traverse: bwrap and QEMU run as those uids and open
    the capsule's root, disk and memory file by path, so every capsule would fail."""
    paths = [data_dir] + ([cache_dir] if name == "microvm" else [])
    for path in paths:
        blocker = _untraversable(path)
        if blocker is not None:
            mode = stat.S_IMODE(blocker.stat().st_mode)
            raise CapsulePathError(
                f"capsules cannot run under {path}: {blocker} has mode {mode:04o}, which the capsules' "
                f"unprivileged users cannot traverse. Fix: chmod o+x {blocker} (others may then enter it, "
                f"not list it), or choose a directory whose parents are all traversable, e.g. /var/lib/wrenn."
            )


def refuse_unusable_paths(program: str, runtime: str, data_dir: Path, cache_dir: Path) -> None:
    """At a command's start: exit with the reason (code 2) rather than fail every capsule later."""
    import typer

    try:
        check_capsule_paths(resolve_runtime_name(runtime)[0], data_dir, cache_dir)
    except CapsulePathError as exc:
        typer.echo(f"{program}: {exc}", err=True)
        raise typer.Exit(2) from None


def build_runtime(name: str, data_dir: Path, cache_dir: Path) -> Runtime:
    """The runtime `name` ("namespace" or "microvm", already resolved) with its state under data_dir."""
    check_capsule_paths(name, data_dir, cache_dir)
    runtime: Runtime
    if name == "namespace":
        from wrenn_platform.host_agent.runtime.namespace.runtime import NamespaceRuntime

        runtime = NamespaceRuntime(data_dir / "namespace")
    elif name == "microvm":
        from wrenn_platform.host_agent.runtime.microvm import MicrovmRuntime

        runtime = MicrovmRuntime(state_root=data_dir / "microvm", cache_dir=cache_dir / "microvm")
    else:
        raise ValueError(f"cannot build runtime {name!r}")
    check_capsule_paths(name, data_dir, cache_dir)  # again, now that the state directories exist
    return runtime
