"""The microvm runtime's parts that need no VM: accelerator choice, kernel extraction, initramfs,
the reseed program, the command line, base-image pruning, the /init hand-over (against a real envd)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from wrenn_platform.host_agent.envd_client import EnvdClient, EnvdError
from wrenn_platform.host_agent.runtime.microvm import accel, disk, initramfs, kernel, net, qemu, reseed
from wrenn_platform.host_agent.runtime.microvm import envd as microvm_envd

CACHE = Path("/var/cache/wrenn/microvm")


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\ncpu MHz\t\t: 2596.120\nflags\t\t: fpu sse2 {flags}\n")
    return path


def test_kvm_only_with_a_virtualization_flag_and_a_usable_device(tmp_path: Path) -> None:
    dev = tmp_path / "kvm"
    dev.write_text("")
    assert accel.detect(_cpuinfo(tmp_path, "vmx"), dev).name == "kvm"
    assert accel.detect(_cpuinfo(tmp_path, "svm"), dev).name == "kvm"
    # /dev/kvm without the flag is the paravirtual nested KVM that cannot boot a stock kernel.
    assert accel.detect(_cpuinfo(tmp_path, "hypervisor"), dev).name == "tcg"
    assert accel.detect(_cpuinfo(tmp_path, "vmx"), tmp_path / "missing").name == "tcg"


def test_the_uncompressed_kernel_is_an_elf_cached_by_version() -> None:
    version = kernel.default_version()
    path = kernel.ensure_vmlinux(CACHE, version)
    assert path.read_bytes()[:4] == b"\x7fELF"
    assert path == CACHE / "kernel" / version / "vmlinux"
    assert kernel.ensure_vmlinux(CACHE, version) == path


def test_initramfs_holds_init_busybox_modules_and_the_reseed_program(tmp_path: Path) -> None:
    version = kernel.default_version()
    archive = initramfs.ensure_initramfs(CACHE, version)
    listing = subprocess.run(["cpio", "-it"], input=archive.read_bytes(), capture_output=True, check=True)
    names = set(listing.stdout.decode().split())
    assert {"init", "bin/busybox", "modules.order", "wrenn-reseed"} <= names
    for module in ("virtio_mmio.ko", "virtio_blk.ko", "ext4.ko", "jbd2.ko", "virtio_net.ko"):
        assert f"modules/{module}" in names, module
    order = [p.name for p in initramfs.resolve_modules(version, initramfs.ROOT_MODULES)]
    assert order.index("jbd2.ko") < order.index("ext4.ko")  # dependencies first
    assert order.index("virtio.ko") < order.index("virtio_mmio.ko")
    # Modules go in unsigned (no hashing + RSA check per module under TCG), otherwise intact.
    ext4 = next(p for p in initramfs.resolve_modules(version, ["ext4"]) if p.name == "ext4.ko").read_bytes()
    assert ext4.endswith(b"~Module signature appended~\n")  # Debian signs them
    out = tmp_path / "x"
    out.mkdir()
    cpio = ["cpio", "-id", "modules/ext4.ko"]
    subprocess.run(cpio, input=archive.read_bytes(), cwd=out, check=True, capture_output=True)
    packed = (out / "modules/ext4.ko").read_bytes()
    assert not packed.endswith(b"~Module signature appended~\n")
    assert packed.startswith(b"\x7fELF") and ext4.startswith(packed) and 0 < len(ext4) - len(packed) < 4096
    assert initramfs.without_signature(packed) == packed


@pytest.mark.root
def test_reseed_program_writes_and_forces_a_reseed() -> None:
    # Somewhere the unprivileged run below can execute it (pytest's tmp_path is root-only).
    workdir = Path("/var/tmp") / f"wrenn-test-microvm-parts-{os.getpid()}"
    workdir.mkdir(mode=0o755)
    program = workdir / "wrenn-reseed"
    try:
        program.write_bytes(reseed.program())
        program.chmod(0o755)
        assert subprocess.run([program], check=False).returncode == 1  # no seed given
        # Exit 0 only if open, write and the ioctl all succeeded.
        assert subprocess.run([program, "00ff"], check=False).returncode == 0
        # Anyone may write to /dev/urandom, but RNDRESEEDCRNG needs CAP_SYS_ADMIN: an
        # unprivileged run failing shows the ioctl is really made.
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(program), "00ff"]
        assert subprocess.run(nobody, check=False).returncode == 1
    finally:
        program.unlink(missing_ok=True)
        workdir.rmdir()


def test_qemu_command_line_is_confined_and_fd_based(tmp_path: Path) -> None:
    cfg = qemu.VmConfig(
        capsule_id="cl-x", accel="tcg", vcpus=2, memory_mb=512, kernel=tmp_path / "k",
        initramfs=tmp_path / "i", memory_file=tmp_path / "m", disk=tmp_path / "d",
        qmp_socket=tmp_path / "q", console_log=tmp_path / "c", tsc_khz=2596120, uid=420007,
        gid=420007, tap_fd=9, env={"WRENN_ENVD_ACCESS_TOKEN": "t"},
    )  # fmt: skip
    argv = qemu.confined_argv(cfg)
    assert argv[:3] == [argv[0], "--no-new-privs", "--"] and argv[0].endswith("setpriv")
    joined = " ".join(argv)
    for part in (
        "--ipc --uts --mount --net",
        "-runas 420007:420007",
        "spawn=deny",
        "tap,id=net0,fd=9",
        f"mac={net.GUEST_MAC}",
        "memory-backend-file,id=mem,size=512M",
        "share=on",
        "tsc_early_khz=2596120",
        f"wrenn.net={net.GUEST_IP}/30,{net.TAP_IP}",
        "-smp 2",
    ):
        assert part in joined, part
    assert "-incoming" not in argv
    cfg.incoming = True
    assert qemu.qemu_args(cfg)[-2:] == ["-incoming", "defer"]


def test_old_builds_base_images_are_pruned(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    for name in ("minimal-old-1024M.ext4", "minimal-old-2048M.ext4", "minimal-new-1024M.ext4", "other-x-1024M.ext4"):
        (base / name).write_bytes(b"")
    young = base / "minimal-young-1024M.ext4"
    young.write_bytes(b"")
    old = time.time() - 3600
    for path in base.iterdir():
        if path != young:
            os.utime(path, (old, old))
    disk.prune_base_images(base, "minimal", "new")
    assert sorted(p.name for p in base.iterdir()) == [
        "minimal-new-1024M.ext4",
        "minimal-young-1024M.ext4",  # another agent may be about to link it
        "other-x-1024M.ext4",
    ]



@pytest.fixture
def loopback_envd(tmp_path: Path) -> Iterator[str]:
    """A real envd on loopback (token `first-token`), as the guest runs it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = Path(microvm_envd.__file__).resolve().parents[4]
    popen = subprocess.Popen(
        [sys.executable, "-S", "-m", "wrenn_platform.envd", "--host", "127.0.0.1", "--port", str(port),
         "--access-token", "first-token"], env={"PATH": os.environ["PATH"], "PYTHONPATH": str(src)}, cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(250):
            try:
                if httpx.get(f"{url}/health", timeout=0.5).status_code == 204:
                    break
            except httpx.HTTPError:
                time.sleep(0.02)
        yield url
    finally:
        popen.kill()
        popen.wait()


async def test_a_slow_first_init_is_followed_by_a_second_with_the_time_alone(
    loopback_envd: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restore the first /init can take seconds under TCG; its timestamp is then stale and the
    agent sends the time once more. Here every /init counts as slow (threshold 0), against a real envd:
    the second call goes out with the new token, and envd is left with it and nothing else changed."""
    url = loopback_envd
    calls: list[dict[str, object]] = []
    original = EnvdClient.init

    async def counting_init(self: EnvdClient, **kwargs: object) -> None:
        calls.append(kwargs)
        await original(self, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(EnvdClient, "init", counting_init)
    monkeypatch.setattr(microvm_envd, "STALE_CLOCK_S", 0.0)
    await microvm_envd.init(url, "first-token", new_token="second-token", env_vars={"A": "1"})

    assert [sorted(k for k, v in c.items() if v is not None) for c in calls] == [
        ["access_token", "env_vars", "timestamp"], ["timestamp"]]
    async with EnvdClient(url, "second-token") as client:
        result = await client.run("/bin/sh", ["-c", "echo $A; date +%s"])
    a, now = result.stdout.decode().split()
    assert a == "1" and abs(int(now) - time.time()) < 2
    async with EnvdClient(url, "first-token") as client:
        with pytest.raises(EnvdError, match=r"(?i)unauthenticated|token"):
            await client.run("/bin/true")
