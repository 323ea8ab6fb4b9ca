"""Probes from inside a capsule: everything that would leave it fails."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from wrenn_platform.host_agent.runtime.namespace import NamespaceRuntime
from wrenn_platform.host_agent.templates import TemplateInfo

from .conftest import CONNECT, MakeCapsule, sh

pytestmark = pytest.mark.root

def host_address() -> str:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
    for line in out.split("\n"):
        fields = line.split()
        if len(fields) > 3 and not fields[1].startswith("wrns"):
            return fields[3].split("/")[0]
    raise AssertionError("no global IPv4 address on the host")


async def test_capsule_cannot_reach_other_capsules_host_or_metadata(make_capsule: MakeCapsule) -> None:
    a = await make_capsule()
    b = await make_capsule()
    accepted: list[str] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(str(writer.get_extra_info("peername")))
        writer.close()

    server = await asyncio.start_server(on_connect, "0.0.0.0", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        targets = [
            (b.slot.host_ip, 49983),  # another capsule's envd
            (a.slot.gateway_ip, port),  # the host, through the capsule's own gateway
            (host_address(), port),  # the host's main address
            (b.slot.gateway_ip, port),  # the host end of another slot
            ("169.254.169.254", 80),  # cloud metadata
        ]
        for host, p in targets:
            _code, out, err = await sh(a, CONNECT.format(host=host, port=p))
            assert out.startswith("FAILED"), (host, p, out, err)
        # ...and the host itself does reach both capsules (envd answered), and the listener works
        _code, out, _ = await sh(a, "echo ok")
        assert out == "ok\n"
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await asyncio.sleep(0.1)
        assert len(accepted) == 1  # only the host's own probe got in
    finally:
        server.close()


async def test_capsule_sees_no_host_files_or_processes(make_capsule: MakeCapsule) -> None:
    capsule = await make_capsule()
    marker = Path("/tmp") / f"wrenn-host-marker-{uuid.uuid4().hex}"
    await asyncio.to_thread(marker.write_text, "secret")
    try:
        for user in ("user", "root"):
            _code, out, _err = await sh(capsule, f"cat {marker}; ls /work /var/lib/wrenn 2>&1; echo rc=$?", user=user)
            assert "secret" not in out
            assert "No such file" in out
        _code, out, _ = await sh(
            capsule, "cat /proc/*/cmdline | tr '\\0' ' '; echo; ls /proc | grep -c '^[0-9]'", user="root"
        )
        assert "pytest" not in out and "wrenn_platform" not in out.replace("wrenn_envd", "")
        assert int(out.strip().split("\n")[-1]) < 20  # only the capsule's own few processes
        assert str(os.getpid()) not in out.split() or "pytest" not in out
    finally:
        marker.unlink()


async def test_capsule_root_cannot_escape(make_capsule: MakeCapsule) -> None:
    capsule = await make_capsule()
    host_aslr = await asyncio.to_thread(Path("/proc/sys/kernel/randomize_va_space").read_text)
    probes = {
        "unshare": "unshare -U -r true",
        "unshare-net": "unshare -n true",
        "mount": "mount -t tmpfs none /mnt",
        "bind-mount": "mount --bind /etc /mnt",
        "sysctl": "echo 0 > /proc/sys/kernel/randomize_va_space",
        "ip": "ip addr add 10.11.255.1/32 dev eth0",
        "route": "ip route add 192.0.2.0/24 dev eth0",
        "chroot": "chroot / true",
        "mknod": "mknod /tmp/sda b 8 0",
        "kmsg": "head -c1 /dev/kmsg",
    }
    for name, command in probes.items():
        code, out, err = await sh(capsule, command, user="root")
        assert code != 0, (name, out, err)
    assert await asyncio.to_thread(Path("/proc/sys/kernel/randomize_va_space").read_text) == host_aslr
    # capsule root is an unprivileged host uid, not host root; `user` is uid 1000 inside
    code, out, _ = await sh(capsule, "id -u; cat /proc/self/uid_map", user="root")
    uid, mapping = out.split("\n", 1)
    inside, outside, count = (int(x) for x in mapping.split())
    assert (uid, inside, count) == ("0", 0, 65536) and outside >= 1 << 30
    code, out, _ = await sh(capsule, "id -u; id -un")
    assert out == "1000\nuser\n"
    # the capsule's root keeps root's powers inside its own files
    code, out, err = await sh(
        capsule, "echo x > /etc/wrenn-test && chown user /etc/wrenn-test && ls -l /etc/wrenn-test", user="root"
    )
    assert code == 0 and " user " in out, (out, err)


SYSCALL_PROBE = """python3 - <<'PY'
import ctypes, errno, os, socket
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
def call(nr, *args):
    rc = libc.syscall(nr, *args)
    return "ok" if rc >= 0 else errno.errorcode[ctypes.get_errno()]
print("io_uring_setup", call(425, 8, params))
print("io_uring_enter", call(426, 0, 0, 0, 0, None, 0))
print("io_uring_register", call(427, 0, 0, None, 0))
try:
    socket.socket(40, socket.SOCK_STREAM); print("vsock ok")
except OSError as e:
    print("vsock", errno.errorcode[e.errno])
print("getpid", call(39))
PY"""


async def test_seccomp_refuses_io_uring_and_vsock(make_capsule: MakeCapsule) -> None:
    capsule = await make_capsule()
    for user in ("user", "root"):
        code, out, err = await sh(capsule, SYSCALL_PROBE, user=user)
        assert code == 0, err
        results = dict(line.split(" ", 1) for line in out.splitlines())
        assert results == {"io_uring_setup": "EPERM", "io_uring_enter": "EPERM", "io_uring_register": "EPERM",
                           "vsock": "EPERM", "getpid": "ok"}, (user, out)


async def test_no_host_path_shows_inside(
    make_capsule: MakeCapsule, runtime: NamespaceRuntime, minimal_template: TemplateInfo
) -> None:
    """bwrap is the capsule's PID 1 (its options now come from a memfd) and the overlay's layers are
    named through /proc/self/fd: neither /proc/1/cmdline nor mountinfo tells where the host keeps
    its data."""
    capsule = await make_capsule()
    host_paths = [str(runtime.state_root), str(minimal_template.path), "/var/", "/tmp/", "/run/"]
    script = ("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done; "
              "cat /proc/self/mountinfo /proc/1/mountinfo /proc/self/mounts")
    for user in ("user", "root"):
        code, out, err = await sh(capsule, script, user=user)
        assert code == 0, err
        assert "bwrap --args" in out and "overlay" in out  # what was read is what was meant
        leaked = [p for p in host_paths if p in out]
        assert not leaked, (user, leaked, out)
