"""Which runtime `--runtime auto` picks."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from wrenn_platform.host_agent import runtimes


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert not runtimes.cpu_has_virtualization(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vmx sse2\n")
    assert runtimes.cpu_has_virtualization(cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu svm\n")
    assert runtimes.cpu_has_virtualization(cpuinfo)
    assert not runtimes.cpu_has_virtualization(tmp_path / "missing")


def test_auto_needs_both_virtualization_and_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    for virt, driver, expected in ((False, True, "namespace"), (True, False, "namespace"),
                                   (True, True, "microvm"), (False, False, "namespace")):
        monkeypatch.setattr(runtimes, "cpu_has_virtualization", lambda v=virt: v)
        monkeypatch.setattr(runtimes, "microvm_driver_available", lambda d=driver: d)
        name, why = runtimes.resolve_runtime_name("auto")
        assert name == expected and why.startswith("auto:")
    assert runtimes.resolve_runtime_name("microvm") == ("microvm", "configured")
    with pytest.raises(ValueError):
        runtimes.resolve_runtime_name("docker")



@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A scratch directory every user may traverse (pytest's own tmp is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="wrenn-runtimes-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_a_data_dir_capsule_users_cannot_traverse_is_refused_by_name(open_tmp: Path) -> None:
    """bwrap and QEMU open capsule files as unprivileged uids: a 0700 data directory (what
    `mktemp -d` makes) would fail every capsule, so the runtime is refused, naming the path and the fix."""
    tmp_path = open_tmp
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o700)
    for name in ("namespace", "microvm"):
        with pytest.raises(runtimes.CapsulePathError) as refused:
            runtimes.build_runtime(name, locked / "data", tmp_path / "cache")
        assert f"{locked} has mode 0700" in str(refused.value) and f"chmod o+x {locked}" in str(refused.value)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o711)
    runtimes.check_capsule_paths("namespace", open_dir / "data", tmp_path / "cache")
    with pytest.raises(runtimes.CapsulePathError, match="cannot run under"):  # microvm: the cache dir too
        runtimes.check_capsule_paths("microvm", open_dir / "data", locked / "cache")
