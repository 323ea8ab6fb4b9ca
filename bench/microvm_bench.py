"""microvm runtime benchmark: cold boot → envd ready, clone from a snapshot → first exec, pause,
resume → first exec, RSS of an idle 512 MiB capsule.

    sudo .venv/bin/python bench/microvm_bench.py [--repeats 5]

Baseline measured in the same run ("raw"): a plain `qemu-system-x86_64` command line doing the
same boot or restore of the same kernel, initramfs, disk and envd, without Wrenn: root, no
`-runas`/`-sandbox`/namespaces, the TAP opened by QEMU by name, state through `exec:cat`, no QMP
round trips of ours, no `/init` (token, clock) and no RNG reseed. Both reach envd over the same kind
of network slot (TAP + DNAT in a netns). Prints min/median/max and the ratio of Wrenn's median to
raw's. Needs root and the `minimal` template (`wrenn template build minimal`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from qemu.qmp import QMPClient

from wrenn_platform.host_agent.envd_client import EnvdClient
from wrenn_platform.host_agent.images import build_template
from wrenn_platform.host_agent.network import allocate_slot, release_slot
from wrenn_platform.host_agent.runtime.base import CapsuleSpec, NetworkSlot
from wrenn_platform.host_agent.runtime.microvm import MicrovmRuntime, disk, initramfs, kernel, net, qemu
from wrenn_platform.host_agent.runtime.microvm.process import cpu_seconds, rss_bytes
from wrenn_platform.host_agent.templates import TemplateStore
from wrenn_platform.wire.envd import envd_url

TOKEN = "bench-" + uuid.uuid4().hex
STATE = Path("/var/tmp/wrenn-bench-microvm") / uuid.uuid4().hex[:8]
OWNER = f"bench:{STATE}"
MEMORY_MB = 512
DISK_MB = 1024
IDLE_S = 3.0  # settle time before reading RSS


def stats(name: str, values: list[float], unit: str = "ms", scale: float = 1000.0) -> float:
    values = sorted(values)
    med = statistics.median(values)
    print(
        f"  {name:40s} n={len(values):3d}  min {values[0] * scale:8.1f}  median {med * scale:8.1f}  "
        f"max {values[-1] * scale:8.1f} {unit}",
        flush=True,
    )
    return med


def ratio(name: str, wrenn: float, raw: float) -> None:
    print(f"  {name:40s} wrenn/raw = {wrenn / raw:5.2f}", flush=True)


def spec(template_dir: Path, template: str = "minimal") -> CapsuleSpec:
    return CapsuleSpec(
        capsule_id="cl-mvb" + uuid.uuid4().hex[:10],
        template=template,
        template_dir=template_dir,
        vcpus=1,
        memory_mb=MEMORY_MB,
        disk_size_mb=DISK_MB,
        envd_access_token=TOKEN,
    )


async def first_exec(url: str, token: str) -> None:
    async with EnvdClient(url, token, timeout=60) as client:
        result = await client.run("/bin/true", user="root")  # the same user for Wrenn and raw
    assert result.exit_code == 0


async def wait_health(url: str, limit_s: float = 120.0) -> None:
    async with EnvdClient(url, connect_timeout=0.5) as client:
        await client.wait_ready(limit_s)


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


# -- raw QEMU ------------------------------------------------------------------------------------


class RawVm:
    """A plain QEMU command line in a slot netns (which holds the same TAP + DNAT as Wrenn's)."""

    def __init__(self, slot: NetworkSlot, workdir: Path, base: Path | None, accel: str) -> None:
        self.slot = slot
        self.accel = accel
        self.dir = workdir
        self.base = base
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = envd_url(slot.host_ip)

    def accel_args(self) -> list[str]:
        if self.accel == "kvm":
            return ["-accel", "kvm", "-cpu", "host"]
        return qemu.tcg_args()

    def argv(self, incoming: Path | None, token: str) -> list[str]:
        version = kernel.default_version()
        cfg = qemu.VmConfig(  # only for the kernel command line, identical to Wrenn's
            capsule_id="raw", accel=self.accel, vcpus=1, memory_mb=MEMORY_MB,
            kernel=Path(), initramfs=Path(), memory_file=Path(), disk=Path(), qmp_socket=Path(),
            console_log=Path(), tsc_khz=_tsc_khz(), uid=0, gid=0, tap_fd=-1,
            env={"WRENN_ENVD_ACCESS_TOKEN": token},
        )  # fmt: skip
        argv = [
            "ip", "netns", "exec", self.slot.netns,
            "qemu-system-x86_64",
            "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=on,memory-backend=mem",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            *self.accel_args(),
            "-smp", "1", "-m", f"{MEMORY_MB}M",
            "-object", f"memory-backend-file,id=mem,size={MEMORY_MB}M,mem-path={self.dir}/memory,share=on",
            "-kernel", str(kernel.ensure_vmlinux(Path("/var/cache/wrenn/microvm"), version)),
            "-initrd", str(initramfs.ensure_initramfs(Path("/var/cache/wrenn/microvm"), version)),
            "-append", qemu.kernel_cmdline(cfg),
            "-serial", f"file:{self.dir}/console.log",
            "-drive", f"id=root,file={self.dir}/disk.qcow2,format=qcow2,if=none",
            "-device", "virtio-blk-device,drive=root",
            "-netdev", f"tap,id=net0,ifname={net.TAP_NAME},script=no,downscript=no,vnet_hdr=on",
            "-device", f"virtio-net-device,netdev=net0,mac={net.GUEST_MAC}",
            "-device", "virtio-rng-device",
            "-qmp", f"unix:{self.dir}/qmp.sock,server=on,wait=off",
        ]  # fmt: skip
        if incoming is not None:
            argv += ["-incoming", "defer"]
        return argv

    async def start(self, incoming: Path | None = None, token: str = TOKEN) -> None:
        """Boot, or restore `incoming` (x-ignore-shared must be set before, hence `defer`)."""
        argv = self.argv(incoming, token)
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
        if incoming is None:
            return
        client = await self._qmp()
        await client.execute("migrate-incoming", {"uri": f"exec:cat {incoming}"})
        await self._wait_migration(client)
        await client.execute("cont")
        await client.disconnect()

    async def _qmp(self) -> QMPClient:
        client = QMPClient("raw")
        sock = self.dir / "qmp.sock"
        while True:
            try:
                await client.connect(str(sock))
                break
            except Exception:
                await asyncio.sleep(0.002)
        caps = [{"capability": "x-ignore-shared", "state": True}]
        await client.execute("migrate-set-capabilities", {"capabilities": caps})
        await client.execute("migrate-set-parameters", {"max-bandwidth": 64 << 30})
        return client

    @staticmethod
    async def _wait_migration(client: QMPClient) -> None:
        while True:
            info = await client.execute("query-migrate")
            assert isinstance(info, dict)
            if info.get("status") in ("completed", "failed"):
                assert info["status"] == "completed", info
                return
            await asyncio.sleep(0.001)

    async def pause(self, state: Path) -> None:
        """stop, device state to a file through `exec:`, quit."""
        client = await self._qmp()
        await client.execute("stop")
        await client.execute("migrate", {"uri": f"exec:cat > {state}"})
        await self._wait_migration(client)
        with contextlib.suppress(Exception):  # QEMU may close the socket before answering
            await client.execute("quit")
        with contextlib.suppress(EOFError):  # ... or while we disconnect
            await client.disconnect()
        assert self.proc is not None
        await asyncio.to_thread(self.proc.wait)
        (self.dir / "qmp.sock").unlink(missing_ok=True)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        (self.dir / "qmp.sock").unlink(missing_ok=True)

    def rss(self) -> int:
        assert self.proc is not None
        # `ip netns exec` execs QEMU, so the pid is QEMU's.
        return rss_bytes(self.proc.pid)


def _tsc_khz() -> int:
    from wrenn_platform.host_agent.runtime.microvm import accel

    return accel.host_tsc_khz()


def fresh_disk(workdir: Path, backing: Path, fmt: str) -> None:
    (workdir / "disk.qcow2").unlink(missing_ok=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b", str(backing), str(workdir / "disk.qcow2")],
        check=True,
    )


# -- the run -------------------------------------------------------------------------------------


async def run(repeats: int) -> None:
    info = build_template("minimal").info
    STATE.mkdir(parents=True)
    STATE.parent.chmod(0o755)
    runtime = MicrovmRuntime(state_root=STATE / "vm")
    print(f"microvm bench: accel={runtime.accel}, QEMU {runtime.vmm_version}, kernel {runtime.kernel_version}")
    if runtime.accel == "tcg":
        print(f"TCG: {' '.join(qemu.tcg_args())}")
    base = disk.ensure_base_image(runtime.cache_dir, info.path, DISK_MB)
    slot = await allocate_slot(OWNER, "bench-wrenn")
    raw_slot = await allocate_slot(OWNER, "bench-raw")
    net.setup(raw_slot)
    raw_dir = STATE / "raw"
    raw_dir.mkdir()
    raw = RawVm(raw_slot, raw_dir, base, runtime.accel)
    w: dict[str, list[float]] = {k: [] for k in ("boot", "boot_cpu", "clone", "pause", "resume", "rss", "rss_clone")}
    r: dict[str, list[float]] = {k: [] for k in w}
    try:
        # A snapshot template to clone from, made once by Wrenn (raw restores the same files).
        src = await runtime.create(spec(info.path), slot)
        await asyncio.sleep(IDLE_S)
        store = TemplateStore(data_dir=STATE / "data")
        with store.snapshot_dir("bench", "snap", runtime="microvm", parent=info) as pending:
            await runtime.snapshot(src.capsule_id, pending.path)
        snap = pending.committed
        assert snap is not None
        await runtime.destroy(src.capsule_id)

        for i in range(repeats):
            # Wrenn: cold boot, idle RSS, pause, resume → first exec.
            s = spec(info.path)
            start = time.perf_counter()
            cap = await runtime.create(s, slot)
            w["boot"].append(time.perf_counter() - start)
            w["boot_cpu"].append(runtime.sample(s.capsule_id).cpu_seconds)
            await asyncio.sleep(IDLE_S)
            w["rss"].append(runtime.sample(s.capsule_id).memory_bytes)
            w["pause"].append(await timed(functools.partial(runtime.pause, s.capsule_id)))

            async def wrenn_resume(s: CapsuleSpec = s, url: str = cap.envd_url) -> None:
                await runtime.resume(s.capsule_id)
                await first_exec(url, TOKEN)

            w["resume"].append(await timed(wrenn_resume))
            await runtime.destroy(s.capsule_id)

            # Wrenn: clone from the snapshot → first exec, RSS.
            s = spec(snap.path, "snap")

            async def wrenn_clone(s: CapsuleSpec = s) -> None:
                c = await runtime.create(s, slot)
                await first_exec(c.envd_url, TOKEN)

            w["clone"].append(await timed(wrenn_clone))
            await asyncio.sleep(IDLE_S)
            w["rss_clone"].append(runtime.sample(s.capsule_id).memory_bytes)
            await runtime.destroy(s.capsule_id)

            # Raw: the same boot.
            fresh_disk(raw_dir, base, "raw")
            (raw_dir / "memory").unlink(missing_ok=True)
            disk.create_memory_file(raw_dir / "memory", MEMORY_MB)
            start = time.perf_counter()
            await raw.start(token=TOKEN)
            await wait_health(raw.url)
            r["boot"].append(time.perf_counter() - start)
            assert raw.proc is not None
            r["boot_cpu"].append(cpu_seconds(raw.proc.pid))
            await asyncio.sleep(IDLE_S)
            r["rss"].append(raw.rss())
            r["pause"].append(await timed(functools.partial(raw.pause, raw_dir / "state")))

            async def raw_resume() -> None:
                await raw.start(incoming=raw_dir / "state")
                await wait_health(raw.url, 30)
                await first_exec(raw.url, TOKEN)

            r["resume"].append(await timed(raw_resume))
            raw.kill()

            # Raw: the same clone (copy RAM, new overlay on the flattened disk, restore).
            async def raw_clone() -> None:
                (raw_dir / "memory").unlink(missing_ok=True)
                await asyncio.to_thread(disk.copy_sparse, snap.path / "memory", raw_dir / "memory")
                await asyncio.to_thread(fresh_disk, raw_dir, snap.path / "disk.qcow2", "qcow2")
                await raw.start(incoming=snap.path / "state")
                await wait_health(raw.url, 30)
                await first_exec(raw.url, TOKEN)

            r["clone"].append(await timed(raw_clone))
            await asyncio.sleep(IDLE_S)
            r["rss_clone"].append(raw.rss())
            raw.kill()
            print(f"  repeat {i + 1}/{repeats} done", flush=True)
    finally:
        raw.kill()
        for capsule_dir in (STATE / "vm" / "capsules").glob("*"):
            await runtime.destroy(capsule_dir.name)
        net.teardown(raw_slot)
        await release_slot(slot)
        await release_slot(raw_slot)
        shutil.rmtree(STATE, ignore_errors=True)

    print(f"\nwrenn (MicrovmRuntime), {MEMORY_MB} MiB / 1 vCPU capsules, {repeats} repeats")
    rows = [
        ("cold boot → envd ready (create)", "boot"),
        ("clone from snapshot → first exec", "clone"),
        ("pause", "pause"),
        ("resume → first exec", "resume"),
    ]
    meds_w = {k: stats(label, w[k]) for label, k in rows}
    meds_w["boot_cpu"] = stats("QEMU CPU time at envd ready (boot)", w["boot_cpu"], "ms CPU")
    meds_w["rss"] = stats("RSS idle after boot", w["rss"], "MiB", 1 / 2**20)
    meds_w["rss_clone"] = stats("RSS idle after clone", w["rss_clone"], "MiB", 1 / 2**20)
    print("raw QEMU, same job")
    meds_r = {k: stats(label, r[k]) for label, k in rows}
    meds_r["boot_cpu"] = stats("QEMU CPU time at envd ready (boot)", r["boot_cpu"], "ms CPU")
    meds_r["rss"] = stats("RSS idle after boot", r["rss"], "MiB", 1 / 2**20)
    meds_r["rss_clone"] = stats("RSS idle after clone", r["rss_clone"], "MiB", 1 / 2**20)
    print("ratios (medians)")
    extra = [("QEMU CPU to envd ready", "boot_cpu"), ("RSS after boot", "rss"), ("RSS after clone", "rss_clone")]
    for label, k in [*rows, *extra]:
        ratio(label, meds_w[k], meds_r[k])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tb-size", type=int, default=qemu.TCG_TB_SIZE_MB, help="TCG translation cache, MiB")
    parser.add_argument("--cpu", default=qemu.TCG_CPU, help="QEMU -cpu model under TCG (experiments)")
    args = parser.parse_args()
    qemu.TCG_TB_SIZE_MB, qemu.TCG_CPU = args.tb_size, args.cpu  # for Wrenn and raw alike
    asyncio.run(run(args.repeats))


if __name__ == "__main__":
    main()
