"""The microvm runtime on real VMs (TCG here), with the real `minimal` template and real envd.

The subset of the capsule API suite that runs on microvm on these machines (TCG, 2 shared cores):
cold boot with metadata; exec (env, users, exit codes); files; PTY (input, resize); the VM's
limits (memory, vcpus, disk size) and the QEMU process's confinement; metrics; pause → resume
keeping a running process, files, address and clock; snapshot → new capsules restored from it
(no boot, own token, diverged RNG, pausable); adoption by a restarted agent; destroy and failed
creates leaving nothing behind; the guest's OOM sparing envd; the host's LAN out of reach. Left to
the namespace runtime's run of the suite because each would need several more boots under TCG:
the rest of the network egress/isolation rules (the slot's rules are the same code for both
runtimes), many-capsule concurrency, TTLs.

One VM is cold-booted for the module and shared in file order: the tests that pause it or
destroy it come last.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from wrenn_platform.host_agent.envd_client import EnvdError, ProcessOutput, ProcessStarted, PtySize
from wrenn_platform.host_agent.network import allocate_slot, release_slot
from wrenn_platform.host_agent.runtime.base import RunningCapsule, RuntimeError_
from wrenn_platform.host_agent.runtime.microvm import MicrovmRuntime, cgroup, net
from wrenn_platform.host_agent.runtime.namespace import cgroups
from wrenn_platform.host_agent.templates import TemplateInfo, TemplateStore
from wrenn_platform.wire.envd import VERSION as ENVD_VERSION

from ..namespace.conftest import REJECTED, connect_under_this_version
from .conftest import DISK_MB, MEMORY_MB, TOKEN, Fleet, envd, sh, spec_for

pytestmark = [pytest.mark.vm, pytest.mark.root, pytest.mark.asyncio(loop_scope="module")]

# Prints "ticking" once the ticker started below has written a new second (TCG on a loaded host
# can be slow to run it, so wait up to 20 s rather than a fixed interval).
TICKING = (
    'a=$(cat /tmp/tick); for i in $(seq 100); do sleep 0.2; [ "$(cat /tmp/tick)" != "$a" ] '
    "&& echo ticking && break; done"
)

# Handed from the snapshot test to the adoption and liveness tests.
SHARED: dict[str, Any] = {}


def qemu_pid(runtime: MicrovmRuntime, capsule_id: str) -> int:
    pid = runtime._vms[capsule_id].record.pid
    assert pid is not None
    return pid


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def vm_gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists() or "zombie" in proc_status(pid).get("State", "")


def netns_has_tap(netns: str) -> bool:
    r = subprocess.run(["ip", "-n", netns, "link", "show", net.TAP_NAME], capture_output=True, check=False)
    return r.returncode == 0


def netns_has_nat(netns: str) -> bool:
    r = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "table", "ip", net.NFT_TABLE],
        capture_output=True,
        check=False,
    )
    return r.returncode == 0


async def assert_guest_clock_is_current(capsule: RunningCapsule, token: str = TOKEN) -> None:
    """The guest's clock within envd's 1 s set threshold of the host's, measured across the
    call (a loaded host can make the call itself take seconds)."""
    before = time.time()
    async with envd(capsule, token) as client:
        result = await client.run("/bin/date", ["+%s.%N"])
    after = time.time()
    guest = float(result.stdout)
    assert before - 1.2 <= guest <= after + 1.2, (before, guest, after)


async def test_cold_boot_gives_a_vm_with_envd_and_metadata(booted: RunningCapsule) -> None:
    meta = booted.metadata
    assert meta["runtime"] == "microvm"
    assert meta["accel"] == "tcg"  # no vmx/svm on these machines
    assert meta["vmm_version"].startswith("QEMU 7.")
    assert meta["agent_version"] and meta["envd_version"]
    code, out, _ = await sh(booted, "uname -r; ip -4 -o addr show eth0")
    assert code == 0
    kernel_line, addr_line = out.splitlines()
    assert kernel_line == meta["kernel_version"]
    assert f"{net.GUEST_IP}/{net.PREFIX_LEN}" in addr_line  # the same in every VM, NATed per slot
    assert booted.slot.guest_ip == net.GUEST_IP
    assert booted.envd_url == f"http://{booted.slot.host_ip}:49983"


async def test_a_vm_booted_with_nothing_to_hand_over_skips_init_yet_is_complete(
    fleet: Fleet, minimal_template: TemplateInfo
) -> None:
    """No env vars and no default user: create asks envd only its version (no /init), so the
    guest's clock is the one its RTC gave it at boot; it must be current all the same."""
    capsule = await fleet.create(spec_for(minimal_template.path, env_vars={}))
    try:
        assert capsule.metadata["envd_version"] == ENVD_VERSION
        await assert_guest_clock_is_current(capsule)
        assert await sh(capsule, "id -un") == (0, "user\n", "")
    finally:
        await fleet.destroy(capsule.capsule_id)


async def test_exec_runs_commands_with_env_users_and_exit_codes(booted: RunningCapsule) -> None:
    code, out, _ = await sh(booted, 'echo "$WRENN_TEST_VAR"; id -un; echo oops >&2; exit 3')
    assert (code, out) == (3, "from-spec\nuser\n")
    code, out, _ = await sh(booted, "id -u", user="root")
    assert (code, out) == (0, "0\n")
    async with envd(booted) as client:
        result = await client.run("/bin/echo", ["hi"])
    assert result.stdout == b"hi\n"


async def test_files_round_trip(booted: RunningCapsule) -> None:
    payload = os.urandom(300_000)
    async with envd(booted) as client:
        path = await client.write_file("/home/user/dir/blob.bin", payload, user="user")
        assert path == "/home/user/dir/blob.bin"
        got = b"".join([chunk async for chunk in client.download("/home/user/dir/blob.bin", user="user")])
        assert got == payload
        names = [e.name for e in await client.list_dir("/home/user/dir", user="user")]
        assert names == ["blob.bin"]
    _, out, _ = await sh(booted, "sha256sum /home/user/dir/blob.bin | cut -c1-64")
    import hashlib

    assert out.strip() == hashlib.sha256(payload).hexdigest()


async def _read_until(stream: Any, needle: bytes, buf: bytearray, limit_s: float = 30) -> None:
    async def loop() -> None:
        while needle not in buf:
            event = await anext(stream)
            if isinstance(event, ProcessOutput):
                buf.extend(event.data)

    await asyncio.wait_for(loop(), limit_s)


async def test_pty_takes_input_and_resizes(booted: RunningCapsule) -> None:
    async with envd(booted) as client:
        stream = client.start("/bin/bash", ["--norc", "-i"], pty=PtySize(80, 24), user="user")
        started = await anext(stream)
        assert isinstance(started, ProcessStarted)
        buf = bytearray()
        await client.send_input(started.pid, b"stty size; echo $((6*7))x\n", pty=True)
        await _read_until(stream, b"42x", buf)
        assert b"24 80" in buf
        await client.resize_pty(started.pid, 100, 30)
        await client.send_input(started.pid, b"stty size\n", pty=True)
        await _read_until(stream, b"30 100", buf)
        await client.send_input(started.pid, b"exit\n", pty=True)
        await stream.aclose()


async def test_vm_limits_memory_vcpus_and_disk(booted: RunningCapsule) -> None:
    code, out, _ = await sh(booted, "grep MemTotal /proc/meminfo | awk '{print $2}'; nproc; df -m / | tail -1")
    mem_kib, cpus, df = out.splitlines()
    assert MEMORY_MB * 1024 * 0.8 < int(mem_kib) <= MEMORY_MB * 1024
    assert cpus == "1"
    assert abs(int(df.split()[1]) - DISK_MB) < DISK_MB * 0.1  # the file system is the disk size
    script = f"fallocate -l {DISK_MB * 2}M /home/user/big; rc=$?; rm -f /home/user/big; exit $rc"
    code, _, err = await sh(booted, script)
    assert code != 0 and "No space left" in err


async def test_the_vm_cannot_reach_the_hosts_own_network(booted: RunningCapsule) -> None:
    """The slot's rules are the namespace runtime's: the host's LAN (a documentation range here)
    is rejected at once for a VM too."""
    for address in host_lan_addresses():
        gateway = str(next(ipaddress.ip_network(f"{address}/24", strict=False).hosts()))
        out = await connect_under_this_version(lambda script: sh(booted, script), gateway, 80)
        assert out.startswith(REJECTED), (gateway, out)


def host_lan_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
    return [f.split()[3].split("/")[0] for f in out.splitlines()
            if f.split()[1] == "eth0" or f.split()[1].startswith("en")]


async def test_qemu_runs_confined(booted: RunningCapsule, runtime: MicrovmRuntime) -> None:
    pid = qemu_pid(runtime, booted.capsule_id)
    status = proc_status(pid)
    uid = runtime.uid_base + booted.slot.index
    assert status["Uid"].split() == [str(uid)] * 4
    assert status["Gid"].split()[0] == str(uid)
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    assert status["CapEff"] == "0000000000000000"
    for ns in ("net", "ipc", "uts", "mnt"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
    # The slot netns is not QEMU's either: the TAP is reached only through the fd it was given.
    slot_ns = os.stat(f"/run/netns/{booted.slot.netns}").st_ino
    assert os.stat(f"/proc/{pid}/ns/net").st_ino != slot_ns


def cgroup_limits(cg: cgroups.Cgroup) -> tuple[int, int, int]:
    """(memory bytes, CPU quota in µs per 100 ms, pids) as the kernel shows them."""
    if cg.v2:
        d = cg.dirs["unified"]
        memory, cpu, pids = (d / "memory.max").read_text(), (d / "cpu.max").read_text(), (d / "pids.max").read_text()
        return int(memory), int(cpu.split()[0]), int(pids)
    memory = (cg.dirs["memory"] / "memory.limit_in_bytes").read_text()
    cpu = (cg.dirs["cpu"] / "cpu.cfs_quota_us").read_text()
    return int(memory), int(cpu), int((cg.dirs["pids"] / "pids.max").read_text())


def peak_memory(cg: cgroups.Cgroup) -> int:
    d = cg.dirs["unified"] if cg.v2 else cg.dirs["memory"]
    name = "memory.peak" if cg.v2 else "memory.max_usage_in_bytes"
    return int((d / name).read_text())


async def test_sample_reports_the_vmm_process_and_disk(booted: RunningCapsule, runtime: MicrovmRuntime) -> None:
    first = runtime.sample(booted.capsule_id)
    script = "sync; df -B1 --output=used / | tail -1; dd if=/dev/urandom of=/home/user/f bs=1M count=8 status=none"
    script += " && sync"
    code, out, err = await sh(booted, script)
    assert code == 0, err
    used_before = int(out)
    assert used_before > 100 << 20  # the guest's view: the template's files count
    deadline = time.monotonic() + 15
    second = runtime.sample(booted.capsule_id)
    while second.disk_bytes < used_before + (8 << 20) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        second = runtime.sample(booted.capsule_id)
    assert used_before + (8 << 20) <= second.disk_bytes < used_before + (64 << 20)
    assert 50 << 20 < second.memory_bytes < 400 << 20  # VmRSS of QEMU
    assert second.cpu_seconds > first.cpu_seconds > 0


async def test_qemu_runs_in_its_own_cgroup_whose_limits_hold(booted: RunningCapsule, runtime: MicrovmRuntime) -> None:
    pid = qemu_pid(runtime, booted.capsule_id)
    cg = cgroups.Cgroup(booted.capsule_id)
    assert cg.pids() == [pid]  # QEMU alone, with every one of its threads (born inside)
    paths: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():  # noqa: ASYNC240
        _, controllers, path = line.split(":", 2)
        paths.update({c: path for c in controllers.split(",")})
    for controller in ("",) if cg.v2 else ("memory", "cpu", "pids"):
        assert paths[controller] == f"/wrenn/{booted.capsule_id}"
    limit = (MEMORY_MB + cgroup.VMM_OVERHEAD_MB["tcg"]) << 20
    assert cgroup_limits(cg) == (limit, 100_000, cgroup.PIDS_MAX)  # 1 vCPU = 1 core per period
    # The guest fills most of its RAM: those pages are charged to QEMU's cgroup, which stays under
    # its limit without an OOM kill (the overhead allowed for QEMU itself is enough).
    code, out, err = await sh(booted, "python3 -c 'b = bytearray(200 << 20); print(len(b))'", user="root")
    assert (code, out) == (0, f"{200 << 20}\n"), err
    assert 200 << 20 < cg.memory_bytes() <= peak_memory(cg) <= limit
    assert cg.oom_kills() == 0 and runtime._vms[booted.capsule_id].proc is not None
    assert runtime._vms[booted.capsule_id].proc.alive()  # type: ignore[union-attr]
    # A busy guest gets at most its one core, however long it spins.
    cpu0, t0 = cg.cpu_seconds(), time.monotonic()
    code, _, err = await sh(booted, "timeout 3 sh -c 'while :; do :; done'; true")
    cpu1, t1 = cg.cpu_seconds(), time.monotonic()
    assert code == 0, err
    assert 0 < cpu1 - cpu0 <= (t1 - t0) * 1.05
    assert len(os.listdir(f"/proc/{pid}/task")) <= cgroup.PIDS_MAX


async def test_the_guests_own_oom_spares_envd(booted: RunningCapsule) -> None:
    """As in a namespace capsule: what envd starts is the OOM killer's pick before envd. (After the
    tests that measure this VM's memory: the hog leaves the guest's RAM touched, QEMU's RSS high.)"""
    code, out, _ = await sh(booted, "sleep 0.2; cat /proc/self/oom_score_adj; sh -c 'cat /proc/self/oom_score_adj'")
    assert out.split() == ["1000", "1000"], out
    # The hog also holds 64 MiB of its own (anonymous, in its RSS): memfd pages are in nobody's RSS,
    # so without it the hog and its shell would tie as the OOM killer's pick.
    hog = ("python3 -c 'import os\nheld = b\"x\" * (64 << 20)\n"
           "fd = os.memfd_create(\"hog\")\nblock = b\"x\" * (1 << 20)\n"
           "while True: os.write(fd, block)'")
    code, out, _ = await sh(booted, f"head -c 200M /dev/zero > /dev/shm/fill; {hog}; echo rc=$?; rm -f /dev/shm/fill")
    assert "rc=137" in out, out  # SIGKILL from the guest's OOM killer
    code, out, _ = await sh(booted, "echo still-alive")
    assert (code, out) == (0, "still-alive\n")


async def test_snapshot_then_new_capsules_restore_from_it_without_booting(
    booted: RunningCapsule,
    runtime: MicrovmRuntime,
    fleet: Fleet,
    minimal_template: TemplateInfo,
    state_root: Path,
) -> None:
    assert (await sh(booted, "echo from-snapshot > /home/user/note"))[0] == 0
    async with envd(booted) as client:
        await client.start_background(
            "/bin/sh", ["-c", "while true; do date +%s > /tmp/tick; sleep 0.2; done"], tag="ticker"
        )
    store = TemplateStore(data_dir=state_root / "data")
    with store.snapshot_dir("team1", "snap", runtime="microvm", parent=minimal_template) as pending:
        await runtime.snapshot(booted.capsule_id, pending.path)
    info = pending.committed
    assert info is not None
    files = {p.name for p in info.path.iterdir()}
    assert {"memory", "state", "disk.qcow2", "microvm.json", "template.json"} <= files
    assert (info.path / "state").stat().st_size < 1 << 20  # device state only; RAM is the file
    memory_before = (info.path / "memory").stat()
    assert (await sh(booted, "echo still-running"))[1] == "still-running\n"
    await assert_guest_clock_is_current(booted)  # the clock caught up after the stop

    clone_token = "clone-token-" + os.urandom(8).hex()
    a = await fleet.create(spec_for(info.path, "snap", envd_access_token=clone_token))
    b = await fleet.create(spec_for(info.path, "snap", envd_access_token=clone_token))
    for clone in (a, b):
        console = (clone.state_dir / "console.log").read_text()
        assert "wrenn-init" not in console  # restored, not booted
        async with envd(clone, clone_token) as client:
            script = f"cat /home/user/note; {TICKING}"
            result = await client.run("/bin/sh", ["-c", script])
            assert result.stdout == b"from-snapshot\nticking\n"
            tags = [p.tag for p in await client.list_processes()]
            assert "ticker" in tags
        with pytest.raises(EnvdError) as denied:
            async with envd(clone, TOKEN) as client:
                await client.run("/bin/true")
        assert denied.value.code == "unauthenticated"
        assert clone.slot.host_ip != booted.slot.host_ip

    async def urandom(capsule: RunningCapsule) -> bytes:
        async with envd(capsule, clone_token) as client:
            return (await client.run("/bin/sh", ["-c", "head -c 32 /dev/urandom | od -An -tx1"])).stdout

    assert await urandom(a) != await urandom(b)  # reseeded: clones do not share RNG output
    await assert_guest_clock_is_current(a, clone_token)

    after = (info.path / "memory").stat()
    assert (after.st_mtime_ns, after.st_size) == (memory_before.st_mtime_ns, memory_before.st_size)

    # A clone pauses and resumes like any capsule, even once its template is deleted.
    store.delete("team1", "snap")
    await runtime.pause(a.capsule_id)
    await runtime.resume(a.capsule_id)
    async with envd(a, clone_token) as client:
        assert (await client.run("/bin/cat", ["/home/user/note"])).stdout == b"from-snapshot\n"
    await fleet.destroy(b.capsule_id)
    SHARED["clone"] = a
    SHARED["clone_token"] = clone_token


async def test_a_restarted_agent_adopts_running_and_paused_vms(
    runtime: MicrovmRuntime, fleet: Fleet, state_root: Path
) -> None:
    clone: RunningCapsule = SHARED["clone"]
    token: str = SHARED["clone_token"]
    await runtime.detach()  # the old agent lets go (as on exit)
    fresh = MicrovmRuntime(state_root=runtime.state_root)
    adopted = await fresh.adopt(clone.state_dir)
    assert adopted is not None
    assert adopted.envd_url == clone.envd_url and adopted.metadata == clone.metadata
    assert fresh.sample(clone.capsule_id).memory_bytes > 0
    assert cgroups.Cgroup(clone.capsule_id).pids() == [qemu_pid(fresh, clone.capsule_id)]  # kept
    await fresh.pause(clone.capsule_id)
    await fresh.detach()
    again = await runtime.adopt(clone.state_dir)  # a paused VM is adoptable too
    assert again is not None
    await runtime.resume(clone.capsule_id)
    async with envd(clone, token) as client:
        assert (await client.run("/bin/cat", ["/home/user/note"])).stdout == b"from-snapshot\n"
    booted_dir = runtime.state_root / "capsules"
    for d in booted_dir.iterdir():
        if d.name != clone.capsule_id:
            assert await runtime.adopt(d) is not None


async def test_alive_follows_the_qemu_process(runtime: MicrovmRuntime, fleet: Fleet) -> None:
    """The agent's crash watcher asks `alive`: a paused VM (no process) is alive while its state
    is there; a running VM whose QEMU was killed from outside is not."""
    clone: RunningCapsule = SHARED["clone"]
    assert runtime.alive(clone.capsule_id)
    await runtime.pause(clone.capsule_id)
    assert runtime.alive(clone.capsule_id)
    await runtime.resume(clone.capsule_id)
    pid = qemu_pid(runtime, clone.capsule_id)
    os.kill(pid, 9)
    # QEMU's other threads can outlive its zombie leader for a moment, and the process cannot be
    # reaped until they are gone: the crash watcher asks again every tick, so an answer within
    # seconds is what counts.
    for _ in range(200):
        if not runtime.alive(clone.capsule_id):
            break
        await asyncio.sleep(0.05)
    assert vm_gone(pid)
    assert not runtime.alive(clone.capsule_id)
    await fleet.destroy(clone.capsule_id)
    assert not runtime.alive(clone.capsule_id) and not clone.state_dir.exists()


async def test_pause_writes_device_state_only_and_resume_keeps_the_running_process(
    booted: RunningCapsule, runtime: MicrovmRuntime
) -> None:
    async with envd(booted) as client:
        before = {p.tag: p.pid for p in await client.list_processes()}
    assert "ticker" in before
    pid = qemu_pid(runtime, booted.capsule_id)
    started = time.monotonic()
    await runtime.pause(booted.capsule_id)
    pause_s = time.monotonic() - started
    assert vm_gone(pid)
    cg = cgroups.Cgroup(booted.capsule_id)
    assert cg.exists() and cg.pids() == []  # kept, empty, while paused
    state = booted.state_dir / "state"
    assert 0 < state.stat().st_size < 1 << 20
    assert (booted.state_dir / "memory").stat().st_size == MEMORY_MB << 20
    assert pause_s < 2.0
    await asyncio.sleep(3)  # long enough that a guest clock left alone would be visibly behind
    resumed = await runtime.resume(booted.capsule_id)
    assert resumed.envd_url == booted.envd_url
    assert not state.exists()
    assert cg.pids() == [qemu_pid(runtime, booted.capsule_id)]
    async with envd(booted) as client:
        after = {p.tag: p.pid for p in await client.list_processes()}
    assert after["ticker"] == before["ticker"]
    await assert_guest_clock_is_current(booted)
    assert await sh(booted, TICKING) == (0, "ticking\n", "")  # the process still ticks after the resume


async def test_destroy_leaves_nothing_behind(booted: RunningCapsule, runtime: MicrovmRuntime, fleet: Fleet) -> None:
    pid = qemu_pid(runtime, booted.capsule_id)
    netns = booted.slot.netns
    await runtime.destroy(booted.capsule_id)
    assert vm_gone(pid)
    assert not booted.state_dir.exists()
    assert not cgroups.Cgroup(booted.capsule_id).exists()
    assert not netns_has_tap(netns) and not netns_has_nat(netns)
    await runtime.destroy(booted.capsule_id)  # idempotent
    await fleet.destroy(booted.capsule_id)  # releases the slot
    assert not Path("/run/netns", netns).exists()  # noqa: ASYNC240


async def test_failed_create_leaves_nothing_behind(
    runtime: MicrovmRuntime, minimal_template: TemplateInfo, state_root: Path
) -> None:
    spec = spec_for(minimal_template.path, disk_size_mb=64)  # smaller than the template
    slot = await allocate_slot(f"test:{state_root}", spec.capsule_id)
    try:
        with pytest.raises(RuntimeError_, match="disk_size_mb"):
            await runtime.create(spec, slot)
        assert not runtime.capsule_dir(spec.capsule_id).exists()
        assert not cgroups.Cgroup(spec.capsule_id).exists()
        assert not netns_has_tap(slot.netns) and not netns_has_nat(slot.netns)
    finally:
        await release_slot(slot)
