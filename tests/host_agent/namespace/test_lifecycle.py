"""Pause/resume, snapshot into a template, adoption by a fresh runtime, failed creates."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wrenn_platform.host_agent.network import allocate_slot, release_slot, slot_for_index
from wrenn_platform.host_agent.runtime.base import RuntimeError_
from wrenn_platform.host_agent.runtime.namespace import NamespaceRuntime, cgroups
from wrenn_platform.host_agent.templates import TemplateInfo, TemplateStore

from .conftest import MakeCapsule, cgroup_exists, envd, my_mounts, sh, spec_for

pytestmark = pytest.mark.root

COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /home/user/counter; sleep 0.05; done"


async def read_counter(capsule) -> int:  # type: ignore[no-untyped-def]
    _code, out, _ = await sh(capsule, "cat /home/user/counter")
    return int(out)


async def test_pause_freezes_and_resume_keeps_processes_files_and_ip(
    make_capsule: MakeCapsule, runtime: NamespaceRuntime
) -> None:
    capsule = await make_capsule()
    async with envd(capsule) as client:
        started = await client.start_background("/bin/sh", ["-c", COUNTER], user="user", tag="counter")
    await sh(capsule, "echo kept > /home/user/file")
    await asyncio.sleep(0.3)
    await runtime.pause(capsule.capsule_id)
    assert cgroups.Cgroup(capsule.capsule_id).frozen()
    frozen_at = (runtime.state_dir(capsule.capsule_id) / "disk/upper/home/user/counter").read_text()
    await asyncio.sleep(0.4)
    assert (runtime.state_dir(capsule.capsule_id) / "disk/upper/home/user/counter").read_text() == frozen_at
    resumed = await runtime.resume(capsule.capsule_id)
    assert resumed.slot == capsule.slot and resumed.envd_url == capsule.envd_url
    first = await read_counter(resumed)
    await asyncio.sleep(0.3)
    assert await read_counter(resumed) > first >= int(frozen_at)
    async with envd(resumed) as client:
        pids = [p.pid for p in await client.list_processes()]
    assert started.pid in pids
    _code, out, _ = await sh(resumed, "cat /home/user/file")
    assert out == "kept\n"


async def test_snapshot_becomes_a_template(
    make_capsule: MakeCapsule, runtime: NamespaceRuntime, minimal_template: TemplateInfo, state_root: Path
) -> None:
    capsule = await make_capsule()
    assert (await sh(capsule, "echo from-snapshot > /home/user/note"))[0] == 0
    code, _, err = await sh(
        capsule,
        "rm /etc/issue && mkdir -p /opt/app && chown user /opt/app && echo root-file > /root/secret",
        user="root",
    )
    assert code == 0, err
    store = TemplateStore(data_dir=state_root / "data")
    with store.snapshot_dir("team1", "snap", runtime="namespace", parent=minimal_template) as pending:
        await runtime.snapshot(capsule.capsule_id, pending.path)
    info = pending.committed
    assert info is not None
    assert (await sh(capsule, "echo still-running"))[1] == "still-running\n"
    upper = info.path / "upper"
    assert (upper / "home/user/note").stat().st_uid == 1000  # owners stored 0-based
    assert (upper / "root/secret").stat().st_uid == 0
    child = await make_capsule(template_dir=info.path, template="snap")
    code, out, _ = await sh(child, "cat /home/user/note; test -e /etc/issue || echo issue-gone; stat -c %U /opt/app")
    assert out == "from-snapshot\nissue-gone\nuser\n"
    code, out, _ = await sh(child, "cat /root/secret", user="root")
    assert out == "root-file\n"
    code, _, _ = await sh(child, "cat /root/secret", user="user")
    assert code != 0
    # a snapshot of a capsule made from a snapshot: a chain of layers
    await sh(child, "echo second > /home/user/note2 && rm /home/user/note")
    with store.snapshot_dir("team1", "snap2", runtime="namespace", parent=info) as pending2:
        await runtime.snapshot(child.capsule_id, pending2.path)
    assert pending2.committed is not None
    grandchild = await make_capsule(template_dir=pending2.committed.path, template="snap2")
    code, out, _ = await sh(
        grandchild, "cat /home/user/note2; test -e /home/user/note || echo note-gone; cat /etc/issue"
    )
    assert code != 0 and out == "second\nnote-gone\n"  # /etc/issue stays deleted two layers down


async def test_a_restarted_agent_adopts_running_capsules_and_cleans_the_rest(
    runtime: NamespaceRuntime, state_root: Path, owner: str, minimal_template: TemplateInfo
) -> None:
    slots = []
    try:
        specs = [spec_for(minimal_template) for _ in range(2)]
        for spec in specs:
            slot = await allocate_slot(owner, spec.capsule_id)
            slots.append(slot)
            await runtime.create(spec, slot)
        keep, lost = specs
        async with envd(runtime._running(runtime._capsules[keep.capsule_id])) as client:
            await client.start_background("/bin/sh", ["-c", "sleep 1000"], user="user", tag="sleeper")
        # the second capsule dies while no agent watches it
        cgroups.Cgroup(lost.capsule_id).kill_all()

        fresh = NamespaceRuntime(state_root, pids_max=256)  # "agent restart": nothing in memory
        assert await fresh.adopt(runtime.state_dir(lost.capsule_id)) is None  # and cleaned up
        assert not runtime.state_dir(lost.capsule_id).exists() and not cgroup_exists(lost.capsule_id)
        adopted = await fresh.adopt(runtime.state_dir(keep.capsule_id))
        assert adopted is not None and adopted.capsule_id == keep.capsule_id
        assert adopted.metadata["runtime"] == "namespace" and adopted.slot == slots[0]
        async with envd(adopted) as client:
            assert "sleeper" in [p.tag for p in await client.list_processes()]
        _code, out, _ = await sh(adopted, "echo adopted")
        assert out == "adopted\n"
        await fresh.pause(keep.capsule_id)
        await fresh.resume(keep.capsule_id)
        await fresh.destroy(keep.capsule_id)
        assert my_mounts(state_root) == [] and not cgroup_exists(keep.capsule_id)
    finally:
        for spec in specs:
            await runtime.destroy(spec.capsule_id)
        for slot in slots:
            await release_slot(slot)


def _leftovers(state_root: Path, capsule_id: str) -> list[str]:
    found = my_mounts(state_root)
    if cgroup_exists(capsule_id):
        found.append("cgroup")
    if (state_root / capsule_id).exists():
        found.append("state dir")
    loops = subprocess.run(["losetup", "-l", "-n", "-O", "BACK-FILE"], capture_output=True, text=True).stdout
    found += [line for line in loops.splitlines() if str(state_root) in line]
    return found


async def test_failed_creates_leave_nothing_behind(
    runtime: NamespaceRuntime, state_root: Path, owner: str, minimal_template: TemplateInfo, tmp_path: Path
) -> None:
    slot = await allocate_slot(owner, "failing")
    try:
        bad = spec_for(tmp_path)  # not a template
        with pytest.raises(RuntimeError_, match="cannot be used"):
            await runtime.create(bad, slot)
        assert _leftovers(state_root, bad.capsule_id) == []

        # fails late: everything (disk, overlay, cgroups, processes) exists when envd fails
        broken = NamespaceRuntime(state_root, envd_command=("/bin/false",), envd_timeout=5)
        late = spec_for(minimal_template)
        with pytest.raises(RuntimeError_, match="envd did not start"):
            await broken.create(late, slot)
        assert _leftovers(state_root, late.capsule_id) == []

        too_big = spec_for(minimal_template, disk_size_mb=10**9)  # a petabyte image: truncate fails
        with pytest.raises(RuntimeError_):
            await runtime.create(too_big, slot)
        assert _leftovers(state_root, too_big.capsule_id) == []
        assert os.listdir(state_root) == []
    finally:
        await release_slot(slot)


async def test_env_vars_default_user_and_metadata(make_capsule: MakeCapsule) -> None:
    capsule = await make_capsule(env_vars={"GREETING": "hello"})
    async with envd(capsule) as client:
        result = await client.run("/bin/sh", ["-c", "echo $GREETING; id -un; hostname; echo $HOME"])
    assert result.stdout.decode() == f"hello\nroot\n{capsule.capsule_id}\n/root\n"  # the default user
    as_user = await make_capsule(default_user="user")
    async with envd(as_user) as client:
        result = await client.run("/bin/sh", ["-c", "id -un"])
    assert result.stdout.decode() == "user\n"
    assert capsule.metadata["runtime"] == "namespace"
    assert capsule.metadata["vmm_version"].startswith("bubblewrap ")
    assert capsule.metadata["kernel_version"] == os.uname().release
    assert capsule.metadata["envd_version"] not in ("", "unknown")
    assert "host kernel" in capsule.metadata["isolation"]
    assert capsule.envd_url == f"http://{capsule.slot.host_ip}:49983"


CREATE_AND_EXIT = """
import asyncio, json, sys
from pathlib import Path
from wrenn_platform.host_agent.network import allocate_slot
from wrenn_platform.host_agent.runtime.base import CapsuleSpec
from wrenn_platform.host_agent.runtime.namespace import NamespaceRuntime

async def main():
    state_root, owner, template_dir, capsule_id, token = sys.argv[1:6]
    slot = await allocate_slot(owner, capsule_id)
    spec = CapsuleSpec(capsule_id=capsule_id, template="minimal", template_dir=Path(template_dir), vcpus=1,
                       memory_mb=256, disk_size_mb=128, envd_access_token=token)
    capsule = await NamespaceRuntime(Path(state_root)).create(spec, slot)
    print(json.dumps({"state_dir": str(capsule.state_dir), "index": slot.index}))

asyncio.run(main())
"""


async def test_capsules_outlive_the_agent_process_and_are_adopted(
    state_root: Path, owner: str, minimal_template: TemplateInfo
) -> None:
    spec = spec_for(minimal_template)
    agent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CREATE_AND_EXIT,
        str(state_root),
        owner,
        str(minimal_template.path),
        spec.capsule_id,
        spec.envd_access_token,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await agent.communicate()
    assert agent.returncode == 0
    created = json.loads(out)
    slot = slot_for_index(created["index"], ())
    fresh = NamespaceRuntime(state_root)
    try:
        adopted = await fresh.adopt(Path(created["state_dir"]))  # the agent that made it is gone
        assert adopted is not None and adopted.slot.index == slot.index
        code, out_text, _ = await sh(adopted, "echo survived")
        assert (code, out_text) == (0, "survived\n")
    finally:
        await fresh.destroy(spec.capsule_id)
        await release_slot(slot)
    assert my_mounts(state_root) == [] and not cgroup_exists(spec.capsule_id)


async def test_concurrent_creates_and_destroys(
    runtime: NamespaceRuntime, state_root: Path, owner: str, minimal_template: TemplateInfo
) -> None:
    specs = [spec_for(minimal_template) for _ in range(6)]
    slots = [await allocate_slot(owner, spec.capsule_id) for spec in specs]
    try:
        capsules = await asyncio.wait_for(
            asyncio.gather(*(runtime.create(spec, slot) for spec, slot in zip(specs, slots, strict=True))), 120
        )
        outs = await asyncio.gather(*(sh(capsule, "hostname") for capsule in capsules))
        assert [out for _, out, _ in outs] == [f"{spec.capsule_id}\n" for spec in specs]
        uid_maps = await asyncio.gather(*(sh(c, "cat /proc/self/uid_map", user="root") for c in capsules))
        assert len({out for _, out, _ in uid_maps}) == len(specs)  # a private uid range each
    finally:
        await asyncio.wait_for(asyncio.gather(*(runtime.destroy(spec.capsule_id) for spec in specs)), 120)
        for slot in slots:
            await release_slot(slot)
    assert my_mounts(state_root) == []
    assert [spec.capsule_id for spec in specs if cgroup_exists(spec.capsule_id)] == []
