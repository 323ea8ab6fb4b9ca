"""`MicrovmRuntime`: the `Runtime` protocol over one QEMU `microvm` VM per capsule.

Create boots (kernel + initramfs + the template's ext4 base under a qcow2 overlay) or, when the
template is a microvm snapshot, restores a clone of it (no boot). Pause writes device state only
(guest RAM is already in its file) and ends QEMU; resume restores it in the same slot. See the
package docstring for the on-disk layout and how to construct it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

from wrenn_platform.host_agent.envd_client import EnvdClient, EnvdError

from ..base import CapsuleSpec, NetworkSlot, ResourceSample, RunningCapsule, RuntimeError_
from . import accel as accel_mod
from . import cgroup, disk, envd, initramfs, kernel, net, qemu
from . import process as vmproc
from .qmp import Qmp, QmpError
from .state import (
    CAPSULE_FILE,
    CONSOLE_LOG,
    DISK_FILE,
    MEMORY_FILE,
    QEMU_LOG,
    QMP_SOCKET,
    SNAPSHOT_FILE,
    STATE_FILE,
    CapsuleRecord,
    SnapshotRecord,
    VmShape,
    read_json,
    write_json,
)

log = logging.getLogger(__name__)

DEFAULT_STATE_ROOT = Path("/var/lib/wrenn/microvm")
DEFAULT_CACHE_DIR = Path("/var/cache/wrenn/microvm")
DEFAULT_UID_BASE = 420_000  # QEMU of slot N runs as uid/gid UID_BASE + N


@dataclass
class _Vm:
    record: CapsuleRecord
    dir: Path
    proc: vmproc.VmProcess | None
    lock: asyncio.Lock
    guest_disk_bytes: int = 0  # the guest's own view (df /), refreshed by `poller`
    poller: asyncio.Task[None] | None = None


def _agent_version() -> str:
    try:
        return importlib_metadata.version("wrenn-platform")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


class MicrovmRuntime:
    name = "microvm"

    def __init__(
        self,
        state_root: Path = DEFAULT_STATE_ROOT,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        *,
        accel: str = "auto",
        kernel_version: str | None = None,
        uid_base: int = DEFAULT_UID_BASE,
        boot_timeout: float = 90.0,
        restore_timeout: float = 20.0,
        sandbox: bool = True,
        guest_metrics_interval: float = 5.0,
    ) -> None:
        self.state_root = state_root
        self.cache_dir = cache_dir
        detected = accel_mod.detect()
        self.accel = detected.name if accel == "auto" else accel
        self.accel_reason = detected.reason if accel == "auto" else "configured"
        self.kernel_version = kernel_version or kernel.default_version()
        self.uid_base = uid_base
        self.boot_timeout = boot_timeout
        self.restore_timeout = restore_timeout
        self.sandbox = sandbox
        self.guest_metrics_interval = guest_metrics_interval
        self.tsc_khz = accel_mod.host_tsc_khz()
        self.vmm_version = _qemu_version()
        self._vms: dict[str, _Vm] = {}
        log.info(
            "microvm runtime: accel=%s (%s), kernel %s, QEMU %s",
            self.accel,
            self.accel_reason,
            self.kernel_version,
            self.vmm_version,
        )

    # -- helpers ---------------------------------------------------------------------------------

    def capsule_dir(self, capsule_id: str) -> Path:
        return self.state_root / "capsules" / capsule_id

    def _base_metadata(self, kernel_version: str) -> dict[str, str]:
        return {
            "runtime": "microvm",
            "accel": self.accel,
            "kernel_version": kernel_version,
            "vmm_version": f"QEMU {self.vmm_version}",
            "agent_version": _agent_version(),
            "isolation": (
                "virtual machine (QEMU microvm) with its own guest kernel"
                + (", KVM" if self.accel == "kvm" else ", TCG software emulation (no KVM on this host)")
            ),
        }

    def _config(self, rec: CapsuleRecord, d: Path, tap_fd: int, incoming: bool) -> qemu.VmConfig:
        shape = rec.shape
        return qemu.VmConfig(
            capsule_id=rec.capsule_id,
            accel=shape.accel,
            vcpus=shape.vcpus,
            memory_mb=shape.memory_mb,
            kernel=kernel.ensure_vmlinux(self.cache_dir, shape.kernel_version),
            initramfs=initramfs.ensure_initramfs(self.cache_dir, shape.kernel_version),
            memory_file=d / MEMORY_FILE,
            disk=d / DISK_FILE,
            qmp_socket=d / QMP_SOCKET,
            console_log=d / CONSOLE_LOG,
            tsc_khz=self.tsc_khz,
            uid=rec.uid,
            gid=rec.uid,
            tap_fd=tap_fd,
            incoming=incoming,
            env=dict(shape.cmdline_env),
            sandbox=self.sandbox,
        )

    async def _start_qemu(self, vm: _Vm, incoming: bool) -> None:
        """Start QEMU for `vm` (booting, or waiting for incoming state) and connect QMP."""
        d = vm.dir
        os.chown(d / DISK_FILE, vm.record.uid, vm.record.uid)
        (d / QMP_SOCKET).unlink(missing_ok=True)
        cg = await asyncio.to_thread(cgroup.ensure, vm.record.capsule_id, vm.record.shape)
        tap_fd = await asyncio.to_thread(net.open_tap, vm.record.slot.netns)
        try:
            cfg = await asyncio.to_thread(self._config, vm.record, d, tap_fd, incoming)
            vm.proc = vmproc.start(cfg, d / QEMU_LOG, cg.procs_files())
        finally:
            os.close(tap_fd)
        vm.record.pid = vm.proc.pid
        if not incoming:  # a booting VM is watched through envd; QMP would only compete for QEMU's lock
            return
        try:
            async with self._qmp(vm, limit_s=15.0) as qmp:
                await qmp.prepare_migration()
        except RuntimeError_ as exc:
            raise RuntimeError_(f"the VM did not start: {self._qemu_error(d)}") from exc

    @contextlib.asynccontextmanager
    async def _qmp(self, vm: _Vm, limit_s: float = 10.0) -> AsyncIterator[Qmp]:
        """A QMP connection for one operation. None is held in between: a restarted agent (or
        one whose event loop went away) never finds QEMU's single monitor slot taken."""
        qmp = Qmp(vm.dir / QMP_SOCKET, f"wrenn-{vm.record.capsule_id}")
        proc = vm.proc
        try:
            await qmp.connect(limit_s=limit_s, alive=proc.alive if proc is not None else None)
        except QmpError as exc:
            raise RuntimeError_(f"cannot reach the VM's monitor: {exc}") from exc
        try:
            yield qmp
        finally:
            await qmp.close()

    def _qemu_error(self, d: Path) -> str:
        try:
            text = (d / QEMU_LOG).read_text(errors="replace").strip()
        except OSError:
            return "no log"
        return text.splitlines()[-1] if text else "QEMU exited"

    def _save(self, vm: _Vm) -> None:
        write_json(vm.dir / CAPSULE_FILE, vm.record.to_json())

    def _running(self, vm: _Vm) -> RunningCapsule:
        rec = vm.record
        return RunningCapsule(
            capsule_id=rec.capsule_id,
            runtime=self.name,
            slot=dataclasses.replace(rec.slot, guest_ip=net.GUEST_IP),
            envd_url=envd.envd_url(rec.slot.host_ip),
            state_dir=vm.dir,
            metadata=dict(rec.metadata),
        )

    def _get(self, capsule_id: str) -> _Vm:
        vm = self._vms.get(capsule_id)
        if vm is None:
            raise RuntimeError_(f"capsule {capsule_id} is not known to the microvm runtime")
        return vm

    def _start_poller(self, vm: _Vm) -> None:
        if vm.poller is None or vm.poller.done():
            vm.poller = asyncio.create_task(self._poll_guest(vm), name=f"microvm-metrics-{vm.record.capsule_id}")

    async def _poll_guest(self, vm: _Vm) -> None:
        """Keep the guest's disk usage at hand for the synchronous `sample()`."""
        rec = vm.record
        async with EnvdClient(envd.envd_url(rec.slot.host_ip), rec.envd_token, timeout=10.0) as client:
            while True:
                with contextlib.suppress(EnvdError, OSError, KeyError, ValueError):
                    vm.guest_disk_bytes = (await client.metrics()).disk_used
                await asyncio.sleep(self.guest_metrics_interval)

    async def _stop_vm(self, vm: _Vm) -> None:
        if vm.poller is not None:
            vm.poller.cancel()
            await asyncio.gather(vm.poller, return_exceptions=True)
            vm.poller = None
        if vm.proc is not None:
            await vm.proc.kill()
            vm.proc = None

    # -- Runtime protocol ------------------------------------------------------------------------

    async def create(self, spec: CapsuleSpec, slot: NetworkSlot) -> RunningCapsule:
        d = self.capsule_dir(spec.capsule_id)
        if spec.capsule_id in self._vms or d.exists():
            raise RuntimeError_(f"capsule {spec.capsule_id} already exists")
        d.mkdir(parents=True)
        # QEMU, running as the capsule's uid, reopens its disk by path when migration changes the
        # image's permissions: the directory must be traversable and the overlay its own.
        os.chmod(d, 0o711)
        snap_file = spec.template_dir / SNAPSHOT_FILE
        snap = SnapshotRecord.from_json(read_json(snap_file)) if snap_file.exists() else None
        if snap is not None and snap.shape.accel != self.accel:
            raise RuntimeError_(
                f"template {spec.template} was saved under {snap.shape.accel}, this host runs {self.accel}"
            )
        shape = (
            dataclasses.replace(snap.shape)
            if snap is not None
            else VmShape(
                vcpus=spec.vcpus,
                memory_mb=spec.memory_mb,
                disk_size_mb=spec.disk_size_mb,
                kernel_version=self.kernel_version,
                accel=self.accel,
            )
        )
        rec = CapsuleRecord(
            capsule_id=spec.capsule_id,
            slot=slot,
            shape=shape,
            envd_token=spec.envd_access_token,
            uid=self.uid_base + slot.index,
            status="running",
            pid=None,
            metadata=self._base_metadata(shape.kernel_version),
        )
        vm = _Vm(rec, d, None, asyncio.Lock())
        self._vms[spec.capsule_id] = vm
        try:
            async with vm.lock:
                if snap is None:
                    await self._boot(vm, spec)
                else:
                    await self._clone(vm, spec, snap)
                if "envd_version" not in rec.metadata:
                    url = envd.envd_url(slot.host_ip)
                    rec.metadata["envd_version"] = await envd.version(url, rec.envd_token)
                self._save(vm)
                self._start_poller(vm)
        except BaseException as exc:
            await self._remove(vm)
            if isinstance(exc, RuntimeError_ | asyncio.CancelledError):
                raise
            raise RuntimeError_(f"microvm create failed: {exc}") from exc
        return self._running(vm)

    async def _boot(self, vm: _Vm, spec: CapsuleSpec) -> None:
        rec, d = vm.record, vm.dir

        def prepare_disks() -> None:
            base = disk.ensure_base_image(self.cache_dir, spec.template_dir, rec.shape.disk_size_mb)
            disk.create_overlay(d / DISK_FILE, base, "raw", rec.shape.disk_size_mb)
            disk.create_memory_file(d / MEMORY_FILE, rec.shape.memory_mb)

        await _all(asyncio.to_thread(net.setup, rec.slot), asyncio.to_thread(prepare_disks))
        rec.shape.cmdline_env = {"WRENN_ENVD_ACCESS_TOKEN": rec.envd_token}
        await self._start_qemu(vm, incoming=False)
        url = envd.envd_url(rec.slot.host_ip)
        proc = vm.proc
        assert proc is not None
        try:
            rec.metadata["envd_version"] = await envd.wait_version(
                url, rec.envd_token, self.boot_timeout, alive=proc.alive
            )
        except envd.EnvdUnavailable as exc:
            if not proc.alive():
                raise RuntimeError_(f"the VM did not start: {self._qemu_error(d)}") from exc
            raise RuntimeError_(f"envd did not come up in the VM: {exc}") from exc
        if spec.env_vars or spec.default_user:  # else nothing to hand over: the RTC set the clock
            await envd.init(url, rec.envd_token, env_vars=spec.env_vars or None, default_user=spec.default_user or None)

    async def _clone(self, vm: _Vm, spec: CapsuleSpec, snap: SnapshotRecord) -> None:
        rec, d, src = vm.record, vm.dir, spec.template_dir
        await asyncio.to_thread(disk.create_memory_file, d / MEMORY_FILE, rec.shape.memory_mb)
        # The RAM copy overlaps the overlay's creation and QEMU's start-up; the state load waits
        # for it (loading virtio state reads guest RAM).
        copy = asyncio.ensure_future(
            asyncio.to_thread(disk.copy_sparse, src / MEMORY_FILE, d / MEMORY_FILE)
        )
        try:
            await _all(
                asyncio.to_thread(net.setup, rec.slot),
                asyncio.to_thread(disk.create_overlay, d / DISK_FILE, src / DISK_FILE, "qcow2", rec.shape.disk_size_mb),
            )
            await self._restore(vm, src / STATE_FILE, ready=copy)
        finally:
            if not copy.done():
                copy.cancel()
            await asyncio.gather(copy, return_exceptions=True)
        try:
            await envd.handover(
                envd.envd_url(rec.slot.host_ip),
                snap.envd_token,
                new_token=rec.envd_token,
                env_vars=spec.env_vars or None,
                default_user=spec.default_user or None,
                retry_s=self.restore_timeout,
            )
        except envd.EnvdUnavailable as exc:
            raise RuntimeError_(f"envd did not take over after the restore: {exc}") from exc
        if "envd_version" in snap.metadata:
            rec.metadata["envd_version"] = snap.metadata["envd_version"]

    async def _restore(self, vm: _Vm, state_file: Path, *, ready: asyncio.Future[None] | None = None) -> None:
        """Start QEMU, load `state_file` (once `ready` is done) and run the VM."""
        await self._start_qemu(vm, incoming=True)
        try:
            async with self._qmp(vm) as qmp:
                if ready is not None:
                    await ready
                await qmp.load_state(state_file)
                await qmp.execute("cont")
        except QmpError as exc:
            raise RuntimeError_(f"restoring the VM failed: {exc}") from exc

    async def destroy(self, capsule_id: str) -> None:
        vm = self._vms.get(capsule_id)
        if vm is None:
            d = self.capsule_dir(capsule_id)
            if not d.exists():
                return
            vm = self._load(d)
            if vm is None:
                await asyncio.to_thread(cgroup.remove, capsule_id)
                await asyncio.to_thread(disk.remove_tree, d)
                return
        async with vm.lock:
            await self._remove(vm)

    async def _remove(self, vm: _Vm) -> None:
        await self._stop_vm(vm)
        rec = vm.record
        if rec.pid and vmproc.is_capsule_vm(rec.pid, rec.capsule_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(rec.pid, 9)
            await vmproc.VmProcess(rec.pid, None).wait(5.0)
        await asyncio.to_thread(cgroup.remove, rec.capsule_id)
        await asyncio.to_thread(net.teardown, rec.slot)
        await asyncio.to_thread(disk.remove_tree, vm.dir)
        self._vms.pop(rec.capsule_id, None)

    async def pause(self, capsule_id: str) -> None:
        vm = self._get(capsule_id)
        async with vm.lock:
            if vm.record.status == "paused":
                return
            async with self._qmp(vm) as qmp:
                try:
                    await qmp.execute("stop")
                    await qmp.prepare_migration()  # a booted VM has not had it yet
                    await qmp.save_state(vm.dir / STATE_FILE)
                except QmpError as exc:
                    with contextlib.suppress(QmpError):
                        await qmp.execute("cont")
                    raise RuntimeError_(f"pausing the VM failed: {exc}") from exc
            vm.record.status = "paused"
            vm.record.pid = None
            self._save(vm)
            await self._stop_vm(vm)

    async def resume(self, capsule_id: str) -> RunningCapsule:
        vm = self._get(capsule_id)
        async with vm.lock:
            if vm.record.status != "paused":
                return self._running(vm)
            try:
                await asyncio.to_thread(functools.partial(net.setup, vm.record.slot, refresh_rules=False))
                await self._restore(vm, vm.dir / STATE_FILE)
                # The guest's clock stood still while it was paused.
                url = envd.envd_url(vm.record.slot.host_ip)
                await envd.init(url, vm.record.envd_token, retry_s=self.restore_timeout)
            except BaseException as exc:
                await self._stop_vm(vm)
                vm.record.pid = None
                if isinstance(exc, RuntimeError_ | asyncio.CancelledError):
                    raise
                raise RuntimeError_(f"resuming the VM failed: {exc}") from exc
            vm.record.status = "running"
            self._save(vm)
            (vm.dir / STATE_FILE).unlink(missing_ok=True)
            self._start_poller(vm)
            return self._running(vm)

    async def snapshot(self, capsule_id: str, dest_template_dir: Path) -> None:
        vm = self._get(capsule_id)
        async with vm.lock:
            if vm.record.status != "running":
                raise RuntimeError_(f"capsule {capsule_id} is not running")
            dest = dest_template_dir
            dest.mkdir(parents=True, exist_ok=True)
            try:
                async with self._qmp(vm) as qmp:
                    await qmp.execute("stop")
                    try:
                        await qmp.prepare_migration()
                        await qmp.save_state(dest / STATE_FILE)
                        await asyncio.gather(
                            asyncio.to_thread(disk.copy_sparse, vm.dir / MEMORY_FILE, dest / MEMORY_FILE),
                            asyncio.to_thread(disk.flatten, vm.dir / DISK_FILE, dest / DISK_FILE),
                        )
                    finally:
                        await qmp.execute("cont")
            except (QmpError, disk.DiskError, OSError) as exc:
                raise RuntimeError_(f"snapshot failed: {exc}") from exc
            os.chmod(dest / MEMORY_FILE, 0o400)
            os.chmod(dest / STATE_FILE, 0o400)
            snap = {
                "shape": dataclasses.asdict(vm.record.shape),
                "envd_token": vm.record.envd_token,
                "metadata": dict(vm.record.metadata),
            }
            write_json(dest / SNAPSHOT_FILE, snap)
            # The guest's clock stood still while it was stopped.
            url = envd.envd_url(vm.record.slot.host_ip)
            with contextlib.suppress(envd.EnvdUnavailable, OSError):
                await envd.init(url, vm.record.envd_token)

    async def adopt(self, state_dir: Path) -> RunningCapsule | None:
        vm = self._load(state_dir)
        if vm is None:
            return None
        rec = vm.record
        if rec.status == "running":
            if not rec.pid or not vmproc.is_capsule_vm(rec.pid, rec.capsule_id):
                return None
            vm.proc = vmproc.VmProcess(rec.pid, None)
            self._start_poller(vm)
        elif not (state_dir / STATE_FILE).exists():
            return None
        self._vms[rec.capsule_id] = vm
        return self._running(vm)

    async def detach(self) -> None:
        """Let go of every VM without stopping it (agent shutdown); `adopt()` finds them again."""
        for vm in list(self._vms.values()):
            if vm.poller is not None:
                vm.poller.cancel()
                await asyncio.gather(vm.poller, return_exceptions=True)
                vm.poller = None
        self._vms.clear()

    def _load(self, d: Path) -> _Vm | None:
        try:
            rec = CapsuleRecord.from_json(read_json(d / CAPSULE_FILE))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return _Vm(rec, d, None, asyncio.Lock())

    def alive(self, capsule_id: str) -> bool:
        """A running VM's QEMU still lives (not exited, not a zombie); a paused VM, which has no
        process, still has the device state it resumes from."""
        vm = self._vms.get(capsule_id)
        if vm is None:
            return False
        if vm.record.status == "paused":
            return (vm.dir / STATE_FILE).exists()
        return vm.proc is not None and vm.proc.alive()

    def sample(self, capsule_id: str) -> ResourceSample:
        vm = self._get(capsule_id)
        disk_bytes = vm.guest_disk_bytes
        pid = vm.record.pid
        if pid is None or vm.proc is None or not vm.proc.alive():
            return ResourceSample(cpu_seconds=0.0, memory_bytes=0, disk_bytes=disk_bytes)
        try:
            return ResourceSample(vmproc.cpu_seconds(pid), vmproc.rss_bytes(pid), disk_bytes)
        except OSError:
            return ResourceSample(cpu_seconds=0.0, memory_bytes=0, disk_bytes=disk_bytes)


async def _all(*steps: Awaitable[None]) -> None:
    """Run independent steps at once; wait for every one (none is left running behind a failure,
    which the clean-up would race), then raise the first error."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _qemu_version() -> str:
    import subprocess

    out = subprocess.run([qemu.QEMU_BINARY, "--version"], capture_output=True, text=True, check=False)
    first = out.stdout.splitlines()[0] if out.stdout else ""
    return first.removeprefix("QEMU emulator version ").strip() or "unknown"
