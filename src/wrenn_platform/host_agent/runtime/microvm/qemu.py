"""The QEMU command line for one capsule VM, and the confinement wrapped around it.

The VM: QEMU's `microvm` machine, the uncompressed kernel (PVH entry), the initramfs, guest RAM in
a `memory-backend-file` (so pause/snapshot write device state only), one virtio-blk disk (the
capsule's qcow2 overlay), virtio-net on the TAP fd, virtio-rng, QMP on a unix socket.

Confinement: `setpriv --no-new-privs` then `unshare` (fresh ipc, uts, mount and network
namespaces: QEMU needs none of the host's), then QEMU drops to an unprivileged uid (`-runas`)
after opening its files and installs its seccomp sandbox (`-sandbox`, with `spawn=deny`; that is
why snapshots pass the state file's fd over QMP instead of `migrate exec:`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import net

QEMU_BINARY = "qemu-system-x86_64"
SANDBOX = "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny"
TCG_TB_SIZE_MB = 32  # TCG translation cache; the default (1 GiB cap) inflates RSS
TCG_CPU = "max"


@dataclass
class VmConfig:
    capsule_id: str
    accel: str  # "kvm" | "tcg"
    vcpus: int
    memory_mb: int
    kernel: Path
    initramfs: Path
    memory_file: Path
    disk: Path
    qmp_socket: Path
    console_log: Path
    tsc_khz: int
    uid: int
    gid: int
    tap_fd: int  # an open TAP in the slot netns, inherited by QEMU
    incoming: bool = False  # start waiting for `migrate-incoming` instead of booting
    share_memory: bool = True
    env: dict[str, str] = field(default_factory=dict)  # reaches init/envd through the cmdline
    sandbox: bool = True


def kernel_cmdline(cfg: VmConfig) -> str:
    parts = [
        "console=ttyS0",
        "quiet",
        "loglevel=1",
        # microvm has no HPET/PM timer: without these, boot hangs calibrating the TSC.
        f"tsc_early_khz={cfg.tsc_khz}",
        "tsc=reliable",
        "clocksource=tsc",
        "panic=-1",
        "reboot=t",
        "pci=off",
        "nomodeset",
        "random.trust_cpu=on",
        # Boot-time savings under TCG (~0.6 s, then ~0.2 s more from the last four). The guest
        # kernel's own hardening against its processes buys nothing here: the capsule's code may
        # be root inside, the boundary that matters is the VM. Clones share one memory layout
        # anyway, so KASLR would not differ.
        "cryptomgr.notests",
        "initcall_blacklist=init_kprobe_trace,crypto_kdf108_init",  # the latter: a KDF self-test
        "mitigations=off",
        "nokaslr",
        "audit=0",
        "security=none",
        "rodata=off",  # no read-only remap of the kernel and no W+X page-table walk (~0.1 s)
        "init_on_alloc=0",  # Debian zeroes every kernel allocation by default
        "8250.nr_uarts=1",  # probe the one serial port, not four
        net.kernel_net_param(),
    ]
    parts += [f"{k}={v}" for k, v in cfg.env.items()]
    return " ".join(parts)


def qemu_args(cfg: VmConfig) -> list[str]:
    mem = f"{cfg.memory_mb}M"
    args = [
        QEMU_BINARY,
        "-name",
        f"wrenn-{cfg.capsule_id},process=wrenn-vm",
        "-machine",
        "microvm,x-option-roms=off,isa-serial=on,rtc=on,memory-backend=mem",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-smp",
        str(cfg.vcpus),
        "-m",
        mem,
        "-object",
        f"memory-backend-file,id=mem,size={mem},mem-path={cfg.memory_file},share={'on' if cfg.share_memory else 'off'}",
        "-kernel",
        str(cfg.kernel),
        "-initrd",
        str(cfg.initramfs),
        "-append",
        kernel_cmdline(cfg),
        "-chardev",
        f"file,id=con,path={cfg.console_log}",
        "-serial",
        "chardev:con",
        "-drive",
        f"id=root,file={cfg.disk},format=qcow2,if=none,cache=writeback,discard=unmap",
        "-device",
        "virtio-blk-device,drive=root",
        "-netdev",
        f"tap,id=net0,fd={cfg.tap_fd}",
        "-device",
        f"virtio-net-device,netdev=net0,mac={net.GUEST_MAC}",
        "-device",
        "virtio-rng-device",
        "-qmp",
        f"unix:{cfg.qmp_socket},server=on,wait=off",
        "-runas",
        f"{cfg.uid}:{cfg.gid}",
    ]
    if cfg.accel == "kvm":
        args += ["-accel", "kvm", "-cpu", "host"]
    else:
        args += tcg_args()
    if cfg.sandbox:
        args += ["-sandbox", SANDBOX]
    if cfg.incoming:
        args += ["-incoming", "defer"]
    return args


def tcg_args() -> list[str]:
    return ["-accel", f"tcg,tb-size={TCG_TB_SIZE_MB}", "-cpu", TCG_CPU]


def confined_argv(cfg: VmConfig) -> list[str]:
    """QEMU's argv behind no_new_privs and fresh namespaces; every wrapper exec()s, so the pid
    the caller gets is QEMU's."""
    setpriv = shutil.which("setpriv") or "setpriv"
    unshare = shutil.which("unshare") or "unshare"
    return [
        setpriv,
        "--no-new-privs",
        "--",
        unshare,
        "--ipc",
        "--uts",
        "--mount",
        "--net",
        "--",
        *qemu_args(cfg),
    ]
