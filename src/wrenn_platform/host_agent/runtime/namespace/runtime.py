"""`NamespaceRuntime`: the driver that puts the pieces together (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import time
from pathlib import Path

import wrenn_platform
from wrenn_platform.host_agent.envd_client import EnvdClient, EnvdError
from wrenn_platform.wire.capsule_id import is_capsule_id
from wrenn_platform.wire.envd import envd_url

from ..base import CapsuleSpec, NetworkSlot, ResourceSample, RunningCapsule, RuntimeError_
from . import cgroups, disk, launcher, procviews, seccomp, snapshot, state, userns
from .bwrap import BWRAP, ENVD_COMMAND, args_fd, bwrap_argv
from .layers import BadTemplate, template_layers

log = logging.getLogger(__name__)

DEFAULT_PIDS_MAX = 1024
MIB = 1024 * 1024
# Open files per capsule process (soft = hard: capsule root cannot raise a hard limit, that takes
# CAP_SYS_RESOURCE in the host's user namespace). With `pids_max` it bounds the capsule's share of the
# host's file table (fs.file-max), which every tenant shares; each open file is also charged to
# the capsule's memory cgroup.
DEFAULT_NOFILE_MAX = 4096
CAPSULE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ISOLATION_NOTE = (
    "Linux namespaces + seccomp + cgroups (bubblewrap); shares the host kernel: weaker isolation than a virtual machine"
)


def _bwrap_version() -> str:
    try:
        out = subprocess.run([BWRAP, "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "unknown"
    return out.strip() or "unknown"


class NamespaceRuntime:
    """Capsules as bubblewrap sandboxes. `state_root` holds one directory per capsule."""

    name = "namespace"

    def __init__(
        self,
        state_root: Path,
        *,
        pids_max: int = DEFAULT_PIDS_MAX,
        nofile_max: int = DEFAULT_NOFILE_MAX,
        envd_command: tuple[str, ...] = ENVD_COMMAND,
        envd_timeout: float = 20.0,
        proc_views: procviews.ProcViews | None = None,
    ) -> None:
        self.state_root = state_root.absolute()
        self.pids_max = pids_max
        self.nofile_max = nofile_max
        self.envd_command = envd_command
        self.envd_timeout = envd_timeout
        self._capsules: dict[str, state.CapsuleState] = {}
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._bwrap_version = _bwrap_version()
        self.proc_views = proc_views or procviews.ProcViews()
        # Traversable (not listable): bwrap, already running as the capsule's unprivileged host
        # uid, resolves `<state_root>/<id>/root`. Each capsule dir is 0710 root:<capsule gid>.
        # The ancestors of `state_root` must be traversable too (e.g. /var/lib/wrenn 0755).
        state_root.mkdir(parents=True, exist_ok=True)
        state_root.chmod(0o711)

    # -- helpers ---------------------------------------------------------------------------

    def state_dir(self, capsule_id: str) -> Path:
        return self.state_root / capsule_id

    def _metadata(self, envd_version: str) -> dict[str, str]:
        return {
            "runtime": self.name,
            "kernel_version": os.uname().release,
            "vmm_version": self._bwrap_version,
            "agent_version": wrenn_platform.__version__,
            "envd_version": envd_version,
            "isolation": ISOLATION_NOTE,
            "proc_views": self.proc_views.status,
        }

    def _running(self, st: state.CapsuleState) -> RunningCapsule:
        return RunningCapsule(
            capsule_id=st.capsule_id,
            runtime=self.name,
            slot=st.slot,
            envd_url=envd_url(st.slot.host_ip),
            state_dir=self.state_dir(st.capsule_id),
            metadata=dict(st.metadata),
        )

    def _get(self, capsule_id: str) -> state.CapsuleState:
        st = self._capsules.get(capsule_id)
        if st is None:
            raise RuntimeError_(f"capsule {capsule_id} is not running on this runtime")
        return st

    @staticmethod
    def _write_etc(paths: disk.Paths, spec: CapsuleSpec, slot: NetworkSlot, owner: int) -> None:
        etc = paths.root / "etc"
        files = {
            "hostname": f"{spec.capsule_id}\n",
            "hosts": f"127.0.0.1\tlocalhost\n127.0.1.1\t{spec.capsule_id}\n",
            "resolv.conf": "".join(f"nameserver {ip}\n" for ip in slot.dns_servers),
        }
        for name, content in files.items():
            path = etc / name
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # may be a symlink into the template: never write through it
            path.write_text(content)
            os.chown(path, owner, owner)
            path.chmod(0o644)

    def _env(self, spec: CapsuleSpec) -> dict[str, str]:
        env = {
            "PATH": CAPSULE_PATH,
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "TERM": "xterm-256color",
        }
        env["WRENN_ENVD_ACCESS_TOKEN"] = spec.envd_access_token
        env["WRENN_CAPSULE_ID"] = spec.capsule_id
        return env

    # -- Runtime protocol ------------------------------------------------------------------

    async def create(self, spec: CapsuleSpec, slot: NetworkSlot) -> RunningCapsule:
        if spec.capsule_id in self._capsules or not is_capsule_id(spec.capsule_id):
            raise RuntimeError_(f"capsule id {spec.capsule_id!r} is in use or invalid")
        try:
            lowers = template_layers(spec.template_dir)
        except BadTemplate as exc:
            raise RuntimeError_(f"template {spec.template!r} cannot be used: {exc}") from None
        state_dir = self.state_dir(spec.capsule_id)
        try:
            state_dir.mkdir(mode=0o700)
        except FileExistsError:
            raise RuntimeError_(f"capsule {spec.capsule_id} already has state on this host") from None
        uid_base = userns.host_uid_base(slot.index)
        state_dir.chmod(0o710)
        os.chown(state_dir, 0, uid_base)
        st = state.CapsuleState(
            capsule_id=spec.capsule_id,
            template=spec.template,
            template_dir=str(spec.template_dir),
            lowers=[str(p) for p in lowers],
            vcpus=spec.vcpus,
            memory_mb=spec.memory_mb,
            disk_size_mb=spec.disk_size_mb,
            slot=slot,
            uid_base=uid_base,
            created_at=time.time(),
        )
        try:
            state.save(state_dir, st)  # first, so a crash from here on can be cleaned up
            await self._start(spec, st, lowers)
        except BaseException as exc:
            await self._teardown(spec.capsule_id, st)
            if isinstance(exc, (RuntimeError_, asyncio.CancelledError)):
                raise
            raise RuntimeError_(f"could not create capsule {spec.capsule_id}: {exc}") from exc
        return self._running(st)

    async def _start(self, spec: CapsuleSpec, st: state.CapsuleState, lowers: list[Path]) -> None:
        paths = disk.Paths(self.state_dir(spec.capsule_id))
        userns_fd = await asyncio.to_thread(userns.create_userns, st.uid_base)
        try:
            child = await asyncio.to_thread(self._mount_and_launch, spec, st, lowers, paths, userns_fd)
        finally:
            os.close(userns_fd)
        self._children[spec.capsule_id] = child
        st.pid = child.pid
        st.pid_start = state.process_start_time(child.pid)
        self._capsules[spec.capsule_id] = st
        state.save(paths.state_dir, st)
        async with EnvdClient(envd_url(st.slot.host_ip), spec.envd_access_token) as envd:
            try:
                await envd.wait_ready(self.envd_timeout, alive=lambda: child.poll() is None)
            except EnvdError as exc:
                tail = paths.console_log.read_bytes()[-2000:].decode(errors="replace")
                raise RuntimeError_(f"envd did not start: {exc}; console: {tail.strip()}") from None
            init = envd.init(env_vars=spec.env_vars, default_user=spec.default_user)
            try:
                _, envd_version = await asyncio.gather(init, envd.version(default="unknown"))
            except EnvdError as exc:
                raise RuntimeError_(f"envd refused its initial settings: {exc}") from None
        st.metadata = self._metadata(envd_version)
        state.save(paths.state_dir, st)

    def _mount_and_launch(
        self, spec: CapsuleSpec, st: state.CapsuleState, lowers: list[Path], paths: disk.Paths, userns_fd: int
    ) -> subprocess.Popen[bytes]:
        disk.create_disk(paths, spec.disk_size_mb, st.uid_base)
        disk.mount_root(paths, lowers, userns_fd)
        self._write_etc(paths, spec, st.slot, st.uid_base)
        cg = cgroups.Cgroup(spec.capsule_id)
        cg.create(cgroups.Limits(vcpus=spec.vcpus, memory_mb=spec.memory_mb, pids=self.pids_max,
                                 cpu_weight=spec.cpu_weight, cpus=procviews.cpuset(spec.vcpus, st.slot.index)))
        self.proc_views.ensure()  # one read when serving; restarts a dead daemon for new capsules
        seccomp_fd = seccomp.filter_fd()
        argv, argv_fd = args_fd(
            bwrap_argv(paths.root, spec.capsule_id, seccomp_fd, spec.memory_mb * MIB // 2, self.envd_command,
                       tuple(self.proc_views.bwrap_args()))
        )
        try:
            return launcher.launch(
                argv,
                netns=Path("/run/netns") / st.slot.netns,
                userns_fd=userns_fd,
                procs_files=cg.procs_files(),
                env=self._env(spec),
                pass_fds=(seccomp_fd, argv_fd),
                log_path=paths.console_log,
                nofile_max=self.nofile_max,
            )
        finally:
            os.close(seccomp_fd)
            os.close(argv_fd)

    async def _teardown(self, capsule_id: str, st: state.CapsuleState | None) -> None:
        """freeze, kill, thaw, wait empty; rmdir cgroups; unmount overlay, lowers, disk; rm -r."""
        cg = cgroups.Cgroup(capsule_id)
        paths = disk.Paths(self.state_dir(capsule_id))
        await asyncio.to_thread(cg.kill_all)
        child = self._children.pop(capsule_id, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=2)
        # once the cgroup is empty, its removal and the disk's are independent
        await asyncio.gather(asyncio.to_thread(cg.remove), asyncio.to_thread(self._remove_disk, paths))
        self._capsules.pop(capsule_id, None)

    @staticmethod
    def _remove_disk(paths: disk.Paths) -> None:
        disk.unmount_all(paths)
        disk.remove_state_dir(paths.state_dir)

    async def destroy(self, capsule_id: str) -> None:
        st = self._capsules.get(capsule_id) or state.load(self.state_dir(capsule_id))
        if st is None and not self.state_dir(capsule_id).exists() and not cgroups.Cgroup(capsule_id).exists():
            return
        await self._teardown(capsule_id, st)

    async def pause(self, capsule_id: str) -> None:
        st = self._get(capsule_id)
        if st.paused:
            return
        # CRIU would checkpoint to disk and release memory; `criu check` fails on this kernel with
        # the CRIU Debian ships, so pause freezes (memory stays resident, ~1 ms).
        await asyncio.to_thread(cgroups.Cgroup(capsule_id).freeze)
        st.paused = True
        state.save(self.state_dir(capsule_id), st)

    async def resume(self, capsule_id: str) -> RunningCapsule:
        st = self._get(capsule_id)
        cgroups.Cgroup(capsule_id).thaw()
        st.paused = False
        state.save(self.state_dir(capsule_id), st)
        return self._running(st)

    async def snapshot(self, capsule_id: str, dest_template_dir: Path) -> None:
        st = self._get(capsule_id)
        cg = cgroups.Cgroup(capsule_id)
        paths = disk.Paths(self.state_dir(capsule_id))
        was_paused = st.paused
        if not was_paused:
            await asyncio.to_thread(cg.freeze)
        try:
            await asyncio.to_thread(snapshot.copy_upper, paths.upper, dest_template_dir / "upper", st.uid_base)
        finally:
            if not was_paused:
                cg.thaw()

    async def adopt(self, state_dir: Path) -> RunningCapsule | None:
        """`state_dir` is `RunningCapsule.state_dir` as returned by `create` (`<state_root>/<id>`)."""
        capsule_id = state_dir.name
        if not is_capsule_id(capsule_id) or state_dir != self.state_dir(capsule_id):
            log.warning("namespace: %s is not a capsule directory of this runtime", state_dir)
            return None
        st = state.load(state_dir)
        if st is None or st.capsule_id != capsule_id:
            log.warning("namespace: %s has no readable state; cleaning it up", state_dir)
            await self._teardown(capsule_id, None)
            return None
        if st.capsule_id in self._capsules:
            return self._running(st)
        cg = cgroups.Cgroup(capsule_id)
        alive = await asyncio.to_thread(self._still_there, st, state_dir)
        if alive:
            if st.paused:
                alive = cg.frozen()
            else:
                async with EnvdClient(envd_url(st.slot.host_ip)) as envd:
                    try:
                        await envd.wait_ready(2.0)
                    except EnvdError:
                        alive = False
        if not alive:
            log.warning("namespace: capsule %s cannot be re-adopted; cleaning it up", capsule_id)
            await self._teardown(capsule_id, st)
            return None
        self._capsules[capsule_id] = st
        return self._running(st)

    @staticmethod
    def _still_there(st: state.CapsuleState, state_dir: Path) -> bool:
        return (
            st.pid > 0
            and st.pid_start != 0
            and state.process_start_time(st.pid) == st.pid_start
            and st.pid in cgroups.Cgroup(st.capsule_id).pids()
            and str(disk.Paths(state_dir).root) in disk.mount_points()
            and Path("/run/netns", st.slot.netns).exists()
        )

    def sample(self, capsule_id: str) -> ResourceSample:
        self._get(capsule_id)
        cg = cgroups.Cgroup(capsule_id)
        return ResourceSample(
            cpu_seconds=cg.cpu_seconds(),
            memory_bytes=cg.memory_bytes(),
            disk_bytes=disk.disk_bytes_used(disk.Paths(self.state_dir(capsule_id))),
        )

    def set_cpu_weight(self, capsule_id: str, weight: int) -> None:
        self._get(capsule_id)
        cgroups.Cgroup(capsule_id).set_cpu_weight(weight)

    def alive(self, capsule_id: str) -> bool:
        """The agent's crash watcher asks this every tick: is the capsule's init still the process
        this runtime started (not gone, not a zombie, not a recycled pid)?"""
        st = self._capsules.get(capsule_id)
        return st is not None and state.process_running(st.pid, st.pid_start)
