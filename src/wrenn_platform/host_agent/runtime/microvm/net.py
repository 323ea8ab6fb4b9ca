"""The VM's side of a network slot: a TAP inside the slot's netns, and NAT to a fixed guest.

Every VM sees the same address and MAC (`GUEST_IP`, `GUEST_MAC`) and the same gateway (the TAP,
`TAP_IP`, `TAP_MAC`), so a snapshot restores into any slot without the guest noticing. The slot's
netns translates: traffic to the slot's `host_ip` is DNATed to the guest, the guest's egress is
masqueraded to the slot's own address. The TAP has a fixed MAC because a random one leaves the
guest's ARP entry for its gateway stale after a clone (39 s to the first reply).

The TAP is opened by root in the slot's netns and its fd handed to QEMU, which then runs with no
network namespace of its own worth the name and no access to `/dev/net/tun`.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..base import NetworkSlot

TAP_NAME = "wrvm0"
TAP_IP = "192.168.127.1"
GUEST_IP = "192.168.127.2"
PREFIX_LEN = 30
TAP_MAC = "02:77:72:6e:00:01"
GUEST_MAC = "02:77:72:6e:00:02"
NFT_TABLE = "wrenn_microvm"

_CLONE_NEWNET = 0x40000000
_TUNSETIFF = 0x400454CA
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_IFF_VNET_HDR = 0x4000
_TAP_FLAGS = _IFF_TAP | _IFF_NO_PI | _IFF_VNET_HDR
_TUNSETPERSIST = 0x400454CB
_TUNSETOWNER = 0x400454CC
T = TypeVar("T")


def kernel_net_param() -> str:
    """The private kernel-command-line parameter the initramfs configures eth0 from."""
    return f"wrenn.net={GUEST_IP}/{PREFIX_LEN},{TAP_IP}"


def _run(args: list[str], stdin: str | None = None) -> None:
    out = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise OSError(f"{' '.join(args)}: {out.stderr.strip()}")


def _nft_rules(slot: NetworkSlot) -> str:
    return f"""table ip {NFT_TABLE}
delete table ip {NFT_TABLE}
table ip {NFT_TABLE} {{
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname != "{TAP_NAME}" ip daddr {slot.host_ip} dnat to {GUEST_IP}
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname != "{TAP_NAME}" ip saddr {GUEST_IP} masquerade
  }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "{TAP_NAME}" ip saddr {GUEST_IP} accept
    oifname "{TAP_NAME}" ip daddr {GUEST_IP} ct status dnat accept
  }}
}}
"""


def setup(slot: NetworkSlot, owner_uid: int = 0, *, refresh_rules: bool = True) -> None:
    """Create the TAP and the NAT table in the slot's netns (idempotent; two processes at most,
    this runs on every create). With `refresh_rules=False` (resume: the slot kept its netns) the
    rules are written only when the TAP had to be created again."""
    fresh = in_netns(slot.netns, lambda: _create_tap(owner_uid))
    if not fresh and not refresh_rules:
        return
    if fresh:
        batch = (
            f"link set {TAP_NAME} address {TAP_MAC}\n"
            f"addr add {TAP_IP}/{PREFIX_LEN} dev {TAP_NAME}\n"
            f"link set {TAP_NAME} up\n"
            # The guest's MAC never changes: no ARP round trip needed after a restore.
            f"neigh replace {GUEST_IP} lladdr {GUEST_MAC} dev {TAP_NAME} nud permanent\n"
        )
        _run(["ip", "-n", slot.netns, "-batch", "-"], stdin=batch)
    _run(["ip", "netns", "exec", slot.netns, "nft", "-f", "-"], stdin=_nft_rules(slot))


def _create_tap(owner_uid: int) -> bool:
    """In the slot's netns: enable forwarding, create the persistent TAP; False if it existed."""
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:  # per netns, resolved by this thread
        f.write("1")
    try:
        socket.if_nametoindex(TAP_NAME)
        return False
    except OSError:
        pass
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", TAP_NAME.encode(), _TAP_FLAGS))
        fcntl.ioctl(fd, _TUNSETOWNER, owner_uid)
        fcntl.ioctl(fd, _TUNSETPERSIST, 1)
    finally:
        os.close(fd)
    return True


def teardown(slot: NetworkSlot) -> None:
    """Remove what `setup` added; the netns itself belongs to the slot allocator."""
    if not Path(f"/run/netns/{slot.netns}").exists():
        return
    subprocess.run(["ip", "-n", slot.netns, "link", "del", TAP_NAME], capture_output=True, check=False)
    subprocess.run(
        ["ip", "netns", "exec", slot.netns, "nft", "delete", "table", "ip", NFT_TABLE],
        capture_output=True,
        check=False,
    )


def in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Run `fn` in a short-lived thread that has joined `netns` (setns() changes only the
    calling thread, and this one ends right after)."""
    result: list[T] = []
    error: list[BaseException] = []

    def worker() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{netns}") as nsf:
                if libc.setns(nsf.fileno(), _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    t = threading.Thread(target=worker, name=f"netns-{netns}")
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


def open_tap(netns: str, name: str = TAP_NAME) -> int:
    """Open the TAP `name` inside `netns` and return its fd (inheritable, for QEMU's `fd=`)."""

    def attach() -> int:
        deadline = time.monotonic() + 5.0
        while True:
            fd = os.open("/dev/net/tun", os.O_RDWR)
            try:
                fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", name.encode(), _TAP_FLAGS))
                return fd
            except OSError as exc:
                os.close(fd)
                # EBUSY: the previous QEMU's fd is still being released.
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
            time.sleep(0.01)

    return in_netns(netns, attach)
