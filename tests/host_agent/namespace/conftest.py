"""Real capsules on the namespace runtime, as root. Slots come from the machine-wide lease dir
(shared with every other agent and test run on this machine)."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from wrenn_platform.host_agent.envd_client import EnvdClient
from wrenn_platform.host_agent.network import allocate_slot, nftables, release_slot
from wrenn_platform.host_agent.network.dns import upstream_dns_servers
from wrenn_platform.host_agent.runtime.base import CapsuleSpec, NetworkSlot, RunningCapsule
from wrenn_platform.host_agent.runtime.namespace import NamespaceRuntime
from wrenn_platform.host_agent.templates import TemplateInfo

TOKEN = "test-token-" + uuid.uuid4().hex
# Not under pytest's tmp_path: the capsule's unprivileged host uid must traverse to its root.
STATE_PARENT = Path("/var/tmp/wrenn-test-namespace")


@pytest.fixture
def state_root() -> Path:
    path = STATE_PARENT / uuid.uuid4().hex[:12]
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def owner(state_root: Path) -> str:
    return f"test:{state_root}"


@pytest.fixture
def runtime(state_root: Path) -> NamespaceRuntime:
    return NamespaceRuntime(state_root, pids_max=256)


def new_id() -> str:
    return "cl-t" + uuid.uuid4().hex[:10]


def spec_for(source: TemplateInfo | Path, **overrides: object) -> CapsuleSpec:
    template_dir = source if isinstance(source, Path) else source.path
    values: dict[str, object] = dict(
        capsule_id=new_id(),
        template="minimal",
        template_dir=template_dir,
        vcpus=1,
        memory_mb=256,
        disk_size_mb=256,
        envd_access_token=TOKEN,
    )
    values.update(overrides)
    return CapsuleSpec(**values)  # type: ignore[arg-type]


MakeCapsule = Callable[..., Awaitable[RunningCapsule]]


@pytest.fixture
async def make_capsule(
    runtime: NamespaceRuntime, minimal_template: TemplateInfo, owner: str
) -> AsyncIterator[MakeCapsule]:
    made: list[tuple[str, NetworkSlot]] = []

    async def make(dns_servers: tuple[str, ...] | None = None, **overrides: object) -> RunningCapsule:
        spec = spec_for(minimal_template, **overrides)
        slot = await allocate_slot(owner, spec.capsule_id, dns_servers=dns_servers)
        try:
            capsule = await runtime.create(spec, slot)
        except BaseException:
            await release_slot(slot)
            raise
        made.append((spec.capsule_id, slot))
        return capsule

    yield make
    for capsule_id, slot in made:
        await runtime.destroy(capsule_id)
        await release_slot(slot)


def envd(capsule: RunningCapsule) -> EnvdClient:
    return EnvdClient(capsule.envd_url, TOKEN, timeout=60)


async def sh(capsule: RunningCapsule, script: str, user: str = "user", within: float = 30) -> tuple[int, str, str]:
    async with envd(capsule) as client:
        result = await client.run("/bin/sh", ["-c", script], user=user, timeout=within)
    return result.exit_code, result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")


# A TCP connect from inside, printing the errno. Refused by the host's rule (icmp admin-prohibited
# → EHOSTUNREACH) it fails at once: not a timeout, and not a peer's own refusal (ECONNREFUSED),
# which would mean the packet left.
CONNECT = (
    "python3 -c 'import socket,sys\n"
    "s=socket.socket(); s.settimeout(3)\n"
    'try:\n s.connect((sys.argv[1], int(sys.argv[2]))); print("CONNECTED")\n'
    'except OSError as e: print("FAILED", e.errno, e)\' {host} {port}'
)
REJECTED = f"FAILED {errno.EHOSTUNREACH} "


async def connect_under_this_version(run: Callable[[str], Awaitable[tuple[int, str, str]]], host: str,
                                     port: int) -> str:
    """CONNECT (through `run`, a shell in the capsule) while this version's nftables table is the
    installed one: test runs of other versions on this shared machine reinstall theirs (the newest
    install wins), so a probe that ran under another table is repeated."""
    ours = nftables.table_version(upstream_dns_servers(), nftables.host_networks())
    for _ in range(10):
        await asyncio.to_thread(nftables.install)
        if nftables.installed_version() != ours:
            continue
        _code, out, err = await run(CONNECT.format(host=host, port=port))
        if nftables.installed_version() == ours:
            return out + err
    raise AssertionError("another version's table kept replacing this one")


def nft_rules() -> str:
    """The shared table's rules, its sets left out: the blocked set follows the host's subnets, which
    come and go with the host's links (and other test runs' veths on this shared machine)."""
    table = subprocess.run(["nft", "list", "table", "inet", "wrenn"], capture_output=True, text=True).stdout
    return table[table.find("\tchain "):]


def my_mounts(state_root: Path) -> list[str]:
    prefix = f"{state_root}/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def cgroup_exists(capsule_id: str) -> bool:
    return any(
        os.path.isdir(f"/sys/fs/cgroup/{c}/wrenn/{capsule_id}") for c in ("cpu", "cpuacct", "memory", "pids", "freezer")
    )
