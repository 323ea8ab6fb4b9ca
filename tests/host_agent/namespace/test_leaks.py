"""N create/exec/destroy cycles leave nothing of ours behind: mounts, cgroups, netns, veths,
loop devices, conntrack entries, leases, nftables rules, files. Only our own resources are
compared (other agents and test runs share this machine)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from wrenn_platform.host_agent.network import allocate_slot, leases, release_slot
from wrenn_platform.host_agent.runtime.namespace import NamespaceRuntime
from wrenn_platform.host_agent.templates import TemplateInfo

from .conftest import cgroup_exists, my_mounts, nft_rules, sh, spec_for

pytestmark = pytest.mark.root

CYCLES = 50


def _out(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


async def test_create_destroy_cycles_leak_nothing(
    runtime: NamespaceRuntime, state_root: Path, owner: str, minimal_template: TemplateInfo
) -> None:
    nft_before = nft_rules()
    used: list[tuple[str, str, str, str]] = []  # capsule id, netns, host iface, ip
    for _ in range(CYCLES):
        spec = spec_for(minimal_template)
        slot = await allocate_slot(owner, spec.capsule_id)
        try:
            capsule = await runtime.create(spec, slot)
            _code, out, _ = await sh(capsule, "echo hi")
            assert out == "hi\n"
        finally:
            await runtime.destroy(spec.capsule_id)
            await release_slot(slot)
        used.append((spec.capsule_id, slot.netns, slot.host_iface, slot.host_ip))

    assert my_mounts(state_root) == []
    assert [cid for cid, *_ in used if cgroup_exists(cid)] == []
    netns = set(_out("ip", "netns", "list").split())
    assert [ns for _, ns, _, _ in used if ns in netns] == []
    links = _out("ip", "-o", "link", "show")
    assert [i for _, _, i, _ in used if f" {i}@" in links or f" {i}:" in links] == []
    loops = _out("losetup", "-l", "-n", "-O", "BACK-FILE")
    assert [line for line in loops.splitlines() if str(state_root) in line] == []
    conntrack = _out("conntrack", "-L")
    assert [ip for *_, ip in used if f"={ip} " in conntrack] == []
    assert [lease for lease in leases.list_leases() if lease.owner == owner] == []
    assert nft_rules() == nft_before
    assert os.listdir(state_root) == []
