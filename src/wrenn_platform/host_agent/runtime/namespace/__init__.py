"""The namespace runtime: capsules as bubblewrap sandboxes sharing the host kernel.

Weaker isolation than the microvm runtime: every capsule runs on the host's kernel, so a kernel
bug reachable through the allowed syscalls is a way out. Operators choose it knowingly.

Per capsule: pid, mount, ipc, uts and user namespaces (bwrap), the slot's network namespace,
cgroups (CPU quota from `vcpus`, memory limit from `memory_mb`, a pids limit), an overlay root
(template lower, per-capsule upper on a sparse ext4 image of `disk_size_mb`), a seccomp filter
and a reduced capability set. envd runs inside and answers `/health` before `create` returns.

Who envd runs as (the decision)
-------------------------------
envd must start processes both as `user` (uid 1000) and as `root` inside the capsule. The two
obvious answers are both wrong:

- bwrap run by host root without a user namespace, or `--unshare-user --uid 0` started by root,
  makes capsule root *host* uid 0: any mistake in the sandbox (a writable host path, a sysctl
  checked against uid 0 — bwrap 0.8 leaves `/proc/sys` writable) is a host compromise;
- `setpriv --reuid=1000 bwrap --unshare-user` maps a single uid: `root` and `user` inside would
  be the same host uid, so "root" could not be distinguished from `user`, and envd could not
  switch between them.

So each capsule gets its own user namespace with a full 65,536-id map onto a private host range
(`userns.host_uid_base(slot_index)`: 2^30 + slot * 65536; slots are leased machine-wide, so two
live capsules never share a range). The runtime (host root) creates that namespace and writes
its map; bwrap runs as uid 0 *of that namespace* and creates the other namespaces inside it.
envd runs as capsule root, which is an unprivileged host uid with no host capabilities; its
capabilities (a Docker-like default set, see `bwrap.CAPSULE_ROOT_CAPS`) act only on objects its
user namespace owns: its mount, pid, ipc and uts namespaces, and files mapped into it. Notably it
has no CAP_NET_ADMIN over the slot netns (owned by the host's user namespace). envd switches to
uid 1000 (host `base + 1000`) for `user` processes with plain setuid/setgid.

The template tree stays owned by host uid 0 and is shared read-only: each capsule sees it through
an *idmapped* bind mount (mount_setattr with the capsule's user namespace), so template root
files appear as capsule root, and the overlay's copy-ups land in the upper dir owned by the
capsule's range. The seccomp filter still denies mount, unshare, setns, ptrace, bpf, keyctl and
friends, so capsule root cannot build new namespaces on top of its user namespace.
`/proc/sys` is bound read-only in any case. no_new_privs is set: no exec (setuid binary, file
capabilities, uid-0 exec) can raise a process above that capability set, and sudo does not
elevate (envd starts root processes directly).

Life cycle: see `runtime.NamespaceRuntime`. Teardown order: freeze, SIGKILL every pid in the
cgroup, thaw, wait empty, rmdir cgroups, unmount overlay, lowers and the loop disk, remove the
state dir (never crossing a mount). The network slot (netns, veth, conntrack) is the agent's and
released by `network.release_slot` after `destroy`.
"""

from .runtime import NamespaceRuntime

__all__ = ["NamespaceRuntime"]
