"""Real microVMs (TCG on these machines) with the real `minimal` template and real envd.

One runtime and one cold-booted VM per module (a boot costs seconds under TCG on 2 shared
cores); tests that change a VM's life (pause, snapshot, destroy) use it in file order or make
their own clones. Slots come from the machine-wide lease dir shared with every other test run.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from wrenn_platform.host_agent.envd_client import EnvdClient
from wrenn_platform.host_agent.network import allocate_slot, release_slot
from wrenn_platform.host_agent.runtime.base import CapsuleSpec, NetworkSlot, RunningCapsule
from wrenn_platform.host_agent.runtime.microvm import MicrovmRuntime
from wrenn_platform.host_agent.templates import TemplateInfo

TOKEN = "test-token-" + uuid.uuid4().hex
# Not under pytest's tmp_path: QEMU, running as the capsule's uid, must traverse to its disk.
STATE_PARENT = Path("/var/tmp/wrenn-test-microvm")
MEMORY_MB = 512
DISK_MB = 1024


def new_id() -> str:
    return "cl-mvt" + uuid.uuid4().hex[:10]


def spec_for(template_dir: Path, template: str = "minimal", **overrides: object) -> CapsuleSpec:
    values: dict[str, object] = dict(
        capsule_id=new_id(),
        template=template,
        template_dir=template_dir,
        vcpus=1,
        memory_mb=MEMORY_MB,
        disk_size_mb=DISK_MB,
        envd_access_token=TOKEN,
        env_vars={"WRENN_TEST_VAR": "from-spec"},
    )
    values.update(overrides)
    return CapsuleSpec(**values)  # type: ignore[arg-type]


class Fleet:
    """Creates capsules on one runtime and removes whatever is left at the end."""

    def __init__(self, runtime: MicrovmRuntime, owner: str) -> None:
        self.runtime = runtime
        self.owner = owner
        self.slots: dict[str, NetworkSlot] = {}

    async def create(self, spec: CapsuleSpec) -> RunningCapsule:
        slot = await allocate_slot(self.owner, spec.capsule_id)
        try:
            capsule = await self.runtime.create(spec, slot)
        except BaseException:
            await release_slot(slot)
            raise
        self.slots[spec.capsule_id] = slot
        return capsule

    async def destroy(self, capsule_id: str) -> None:
        await self.runtime.destroy(capsule_id)
        slot = self.slots.pop(capsule_id, None)
        if slot is not None:
            await release_slot(slot)

    async def close(self) -> None:
        for capsule_id in list(self.slots):
            await self.destroy(capsule_id)


@pytest.fixture(scope="module")
def state_root() -> Iterator[Path]:
    path = STATE_PARENT / uuid.uuid4().hex[:12]
    path.mkdir(parents=True)
    STATE_PARENT.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def runtime(state_root: Path) -> MicrovmRuntime:
    return MicrovmRuntime(state_root=state_root / "vm", guest_metrics_interval=0.5)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(runtime: MicrovmRuntime, state_root: Path) -> AsyncIterator[Fleet]:
    f = Fleet(runtime, owner=f"test:{state_root}")
    yield f
    await f.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def booted(fleet: Fleet, minimal_template: TemplateInfo) -> RunningCapsule:
    """One cold-booted VM shared by the module's tests."""
    return await fleet.create(spec_for(minimal_template.path))


def envd(capsule: RunningCapsule, token: str = TOKEN) -> EnvdClient:
    return EnvdClient(capsule.envd_url, token, timeout=60)


async def sh(capsule: RunningCapsule, script: str, user: str = "user") -> tuple[int, str, str]:
    async with envd(capsule) as client:
        result = await client.run("/bin/sh", ["-c", script], user=user, timeout=60)
    return result.exit_code, result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
