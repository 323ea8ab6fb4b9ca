"""`wrenn-reseed`: a 252-byte static x86-64 program that reseeds the guest's RNG after a clone.

Clones restored from one snapshot share the kernel's crng state. Writing to /dev/urandom only
feeds the input pool; `ioctl(RNDRESEEDCRNG)` makes the crng take it (and RDRAND) in at once. No
interpreter in the template does this cheaply under TCG right after a restore (perl: ~0.4-0.8 s,
python more), so the initramfs drops this program into the guest's /run at boot and the runtime
runs it through envd after every clone: `wrenn-reseed <hex from the host>`.

The code, assembled once with GNU as (intel syntax), is:

    mov rsi,[rsp+16]; test rsi,rsi; jz fail          ; argv[1]
    xor edx,edx; len: cmp byte [rsi+rdx],0; je open; inc rdx; jmp len
    open: mov r13,rsi; mov r14,rdx
          open("/dev/urandom", O_WRONLY) -> r12; js fail
          write(r12, argv[1], strlen); js fail
          ioctl(r12, RNDRESEEDCRNG=0x5207, 0); js fail
          exit(0)
    fail: exit(1)
    path: "/dev/urandom\\0"
"""

from __future__ import annotations

import struct

GUEST_PATH = "/run/wrenn/wrenn-reseed"

_CODE = bytes.fromhex(
    "488b7424104885f6746131d2803c1600740548ffc2ebf54989f54989d6b802000000488d3d4e000000be01000000"
    "31d20f0585c078354189c489c74c89ee4c89f2b8010000000f054885c0781e4489e7be0752000031d2b810000000"
    "0f0585c0780931ffb83c0000000f05bf01000000b83c0000000f052f6465762f7572616e646f6d00"
)
_BASE = 0x400000
_EHDR = 64
_PHDR = 56


def program() -> bytes:
    """The ELF executable: one PT_LOAD segment, entry right after the headers."""
    size = _EHDR + _PHDR + len(_CODE)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = ident + struct.pack(
        "<HHIQQQIHHHHHH", 2, 0x3E, 1, _BASE + _EHDR + _PHDR, _EHDR, 0, 0, _EHDR, _PHDR, 1, 64, 0, 0
    )
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, _BASE, _BASE, size, size, 0x1000)
    return ehdr + phdr + _CODE
