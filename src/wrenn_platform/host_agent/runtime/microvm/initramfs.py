"""The guest initramfs: busybox-static, the kernel modules the root needs, and a small /init.

Debian's kernel builds virtio, ext4 and virtio-net as modules and has no `CONFIG_IP_PNP`, so the
initramfs loads the modules, configures eth0 from the private `wrenn.net=` parameter, mounts the
capsule's disk (one virtio-blk device: a qcow2 overlay on the template's read-only ext4 base) and
`switch_root`s into the template's tree, exec'ing envd as PID 1. Parameters without a dot (e.g.
`WRENN_ENVD_ACCESS_TOKEN=...`) reach init, and so envd, as environment variables.

The archive is uncompressed (TCG pays for every decompression cycle) and cached by a hash of its
inputs. The modules go in without Debian's signatures: the kernel then loads them unverified
(it only notes a taint) instead of hashing each one and checking an RSA signature under TCG
(~0.15 s of every boot). Nothing is lost: the initramfs is built by root from the host's own
modules, and the guest kernel does not enforce signatures.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import tempfile
import time
from pathlib import Path

from . import reseed

BUSYBOX = Path("/bin/busybox")
MODULES = Path("/lib/modules")

# In load order after dependency resolution; names as in modules.dep (without .ko).
ROOT_MODULES = [
    "virtio_mmio",
    "virtio_blk",
    "crc32c_generic",
    "ext4",
    "virtio_net",
    "virtio_rng",
]

INIT = r"""#!/bin/busybox sh
b=/bin/busybox
$b mount -t devtmpfs devtmpfs /dev
$b mount -t proc proc /proc
$b mount -t sysfs sysfs /sys
for m in $($b cat /modules.order); do $b insmod /modules/$m; done
net=""
root=/dev/vda
init=/usr/local/bin/wrenn-envd
for a in $($b cat /proc/cmdline); do
  case "$a" in
    wrenn.net=*) net="${a#wrenn.net=}" ;;
    wrenn.root=*) root="${a#wrenn.root=}" ;;
    wrenn.init=*) init="${a#wrenn.init=}" ;;
  esac
done
i=0
while [ ! -b "$root" ] && [ $i -lt 500 ]; do $b usleep 10000; i=$((i+1)); done
$b mkdir -p /newroot
if ! $b mount -t ext4 -o noatime "$root" /newroot; then
  echo "wrenn-init: cannot mount $root" >/dev/console
  $b poweroff -f
fi
$b ip link set lo up
if [ -n "$net" ]; then
  addr="${net%%,*}"
  gw="${net#*,}"
  $b ip link set eth0 up
  $b ip addr add "$addr" dev eth0
  $b ip route add default via "$gw"
fi
for d in dev proc sys; do $b mkdir -p /newroot/$d; $b mount --move /$d /newroot/$d; done
$b mkdir -p /newroot/dev/pts /newroot/dev/shm /newroot/tmp /newroot/run
$b mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /newroot/dev/pts
$b mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /newroot/dev/shm
$b mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /newroot/run
$b mkdir -m 700 /newroot/run/wrenn
$b cp /wrenn-reseed /newroot/run/wrenn/wrenn-reseed
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
read up _ </newroot/proc/uptime
echo "wrenn-init: starting $init at ${up}s" >/dev/console
exec $b switch_root /newroot "$init"
"""


_SIG_MAGIC = b"~Module signature appended~\n"
_SIG_INFO = 12  # struct module_signature, the signature's length in its last 4 bytes (BE)


def without_signature(module: bytes) -> bytes:
    """The module as built, without the signature appended to it (unchanged if unsigned)."""
    if not module.endswith(_SIG_MAGIC):
        return module
    info_end = len(module) - len(_SIG_MAGIC)
    (sig_len,) = struct.unpack(">I", module[info_end - 4 : info_end])
    return module[: info_end - _SIG_INFO - sig_len]


def resolve_modules(version: str, wanted: list[str]) -> list[Path]:
    """The .ko files for `wanted` and their dependencies, dependencies first."""
    base = MODULES / version
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (base / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
        by_name[_modname(mod)] = mod
    order: list[str] = []

    def visit(rel: str) -> None:
        if rel in order:
            return
        for d in deps.get(rel, []):
            visit(d)
        order.append(rel)

    for name in wanted:
        rel = by_name.get(name)
        if rel is None:
            if name in _builtin(base):
                continue
            raise FileNotFoundError(f"kernel module {name} not found for {version}")
        visit(rel)
    return [base / rel for rel in order]


def _modname(rel: str) -> str:
    return Path(rel).name.split(".ko")[0].replace("-", "_")


def _builtin(base: Path) -> set[str]:
    path = base / "modules.builtin"
    if not path.exists():
        return set()
    return {_modname(line) for line in path.read_text().splitlines() if line}


class CpioWriter:
    """Writes the `newc` format the kernel unpacks into its initial rootfs."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes) -> None:
        self._ino += 1
        namez = name.encode() + b"\0"
        fields = [self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(namez), 0]
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._parts.append(header + namez + b"\0" * _pad(len(header) + len(namez)))
        self._parts.append(data + b"\0" * _pad(len(data)))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755, b"")

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0, b"")
        blob = b"".join(self._parts)
        return blob + b"\0" * _pad(len(blob), 512)


def _pad(n: int, align: int = 4) -> int:
    return (align - n % align) % align


def build(version: str) -> bytes:
    modules = resolve_modules(version, ROOT_MODULES)
    w = CpioWriter()
    for d in ("bin", "dev", "proc", "sys", "modules", "newroot"):
        w.directory(d)
    w.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    w.file("init", INIT.encode(), 0o755)
    w.file("wrenn-reseed", reseed.program(), 0o700)
    for m in modules:
        w.file(f"modules/{m.name}", without_signature(m.read_bytes()))
    w.file("modules.order", "\n".join(m.name for m in modules).encode() + b"\n")
    return w.finish()


def _inputs_hash(version: str) -> str:
    h = hashlib.sha256(INIT.encode())
    h.update(b"unsigned-modules")
    h.update(version.encode())
    h.update(" ".join(ROOT_MODULES).encode())
    h.update(reseed.program())
    st = BUSYBOX.stat()
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def ensure_initramfs(cache_dir: Path, version: str) -> Path:
    dest = cache_dir / "initramfs" / f"{version}-{_inputs_hash(version)}.cpio"
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(build(version))
    os.replace(tmp, dest)
    # Older builds (a changed init script or busybox) are read by QEMU only when it starts.
    now = time.time()
    for old in dest.parent.glob(f"{version}-*.cpio"):
        if old != dest and now - old.stat().st_mtime > 600:
            old.unlink(missing_ok=True)
    return dest
