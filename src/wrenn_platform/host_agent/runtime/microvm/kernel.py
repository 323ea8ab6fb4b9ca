"""The guest kernel: the uncompressed `vmlinux` out of Debian's `/boot/vmlinuz-*`.

QEMU boots an uncompressed ELF `vmlinux` through its PVH entry point, which skips the bzImage's
self-decompression (~2.8 s under TCG). Debian ships only the bzImage, so the payload is cut out
(as the kernel's `scripts/extract-vmlinux` does) and cached by kernel version.
"""

from __future__ import annotations

import lzma
import os
import subprocess
import tempfile
import zlib
from pathlib import Path

BOOT = Path("/boot")
MODULES = Path("/lib/modules")

_MAGICS: list[tuple[str, bytes]] = [
    ("xz", b"\xfd7zXZ\x00"),
    ("gzip", b"\x1f\x8b\x08"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
]


def installed_versions() -> list[str]:
    """Kernel versions that have both a bzImage and a modules tree, newest last."""
    found = [
        p.name.removeprefix("vmlinuz-")
        for p in BOOT.glob("vmlinuz-*")
        if (MODULES / p.name.removeprefix("vmlinuz-")).is_dir()
    ]
    return sorted(found, key=_version_key)


def _version_key(v: str) -> list[int | str]:
    return [int(x) if x.isdigit() else x for x in v.replace("-", ".").split(".")]


def default_version() -> str:
    versions = installed_versions()
    if not versions:
        raise FileNotFoundError("no guest kernel: install linux-image-amd64 (scripts/install-system-deps)")
    return versions[-1]


def _decompress(kind: str, data: bytes) -> bytes:
    if kind == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    out = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=False)
    return out.stdout


def extract_vmlinux(bzimage: bytes) -> bytes:
    """Find the compressed payload and return the ELF it decompresses to."""
    for kind, magic in _MAGICS:
        pos = bzimage.find(magic)
        while pos != -1:
            try:
                out = _decompress(kind, bzimage[pos:])
            except (lzma.LZMAError, OSError, EOFError):
                out = b""
            if out.startswith(b"\x7fELF"):
                return out
            pos = bzimage.find(magic, pos + 1)
    raise ValueError("no compressed ELF payload found in the bzImage")


def ensure_vmlinux(cache_dir: Path, version: str) -> Path:
    """Return the cached uncompressed kernel for `version`, extracting it on first use."""
    dest = cache_dir / "kernel" / version / "vmlinux"
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    data = extract_vmlinux((BOOT / f"vmlinuz-{version}").read_bytes())
    fd, tmp = tempfile.mkstemp(dir=dest.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, dest)
    return dest
