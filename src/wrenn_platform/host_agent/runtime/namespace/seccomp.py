"""The capsule's seccomp filter, compiled once to BPF for `bwrap --seccomp FD`.

Default allow; deny (EPERM) what lets a process leave or reshape its sandbox or reach the
kernel's riskiest surfaces. Without this filter `unshare(CLONE_NEWUSER)` succeeds in the capsule
even with every capability dropped, and a new user namespace would hand back capabilities.
`clone3` answers ENOSYS (its flags live in a struct seccomp cannot inspect) so libc falls back
to `clone`, whose namespace flags are checked.

Compared with Docker's default profile (an allow-list; SECURITY.md lists the differences): every
call Docker refuses to an unprivileged container is refused here too, io_uring included (Docker
dropped it in 25.0: a large, often-exploited kernel surface, and its operations bypass this
filter), as are AF_VSOCK sockets (they would reach the host's vsock services past the netns).
Stricter than Docker: `personality` is refused outright.
"""

from __future__ import annotations

import errno
import functools
import os
import tempfile

import pyseccomp as sc

DENIED = (
    # file systems and mounts
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "move_mount",
    "mount_setattr",
    # namespaces
    "unshare",
    "setns",
    # kernel, modules, power
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "syslog",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    # introspection of other processes, risky subsystems
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "lookup_dcookie",
    "open_by_handle_at",
    "name_to_handle_at",
    "quotactl",
    "nfsservctl",
    "iopl",
    "ioperm",
    "personality",
    # io_uring: submitted operations are not seen by seccomp, and the subsystem is a large attack surface
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    # obsolete or privileged calls Docker's default profile also refuses
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "vm86",
    "vm86old",
    "vhangup",
    "fanotify_init",
    "quotactl_fd",
    "mbind",
    "set_mempolicy",
    "get_mempolicy",
    "move_pages",
    "migrate_pages",
)
# Names every kernel this runs on knows: failing to resolve one is a build error, not a silent gap.
REQUIRED = frozenset({"unshare", "setns", "mount", "ptrace", "bpf", "keyctl", "userfaultfd", "io_uring_setup",
                      "io_uring_enter", "io_uring_register", "perf_event_open", "kexec_load"})
AF_VSOCK = 40
# CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
# CLONE_NEWTIME
CLONE_NS_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x80)
TIOCSTI = 0x5412
TIOCLINUX = 0x541C


@functools.cache
def compiled_filter() -> bytes:
    f = sc.SyscallFilter(defaction=sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED:
        try:
            f.add_rule(eperm, name)
        except (RuntimeError, ValueError, OSError):  # unknown to this arch or libseccomp (e.g. vm86 on x86-64)
            if name in REQUIRED:
                raise
    f.add_rule(eperm, "socket", sc.Arg(0, sc.EQ, AF_VSOCK))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in CLONE_NS_FLAGS:
        f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    f.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, TIOCSTI))
    f.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, TIOCLINUX))
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        return out.read()


def filter_fd() -> int:
    """A fresh readable fd holding the compiled filter (bwrap reads it to EOF)."""
    fd = os.memfd_create("wrenn-seccomp", os.MFD_CLOEXEC)
    os.write(fd, compiled_filter())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
