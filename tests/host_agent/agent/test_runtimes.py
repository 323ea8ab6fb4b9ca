"""Which runtime `--runtime auto` picks."""

from __future__ import annotations

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

