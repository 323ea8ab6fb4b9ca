"""The capsule API suite (`tests/control_plane/capsules/`) run on the microvm runtime: the same
test functions, imported, against a `wrenn server` app whose embedded agent runs `microvm`.

The subset (TCG on 2 shared cores makes every boot cost seconds):
- lifecycle: `test_pause_resume_and_wrong_state_409s`, `test_create_then_first_exec`,
  `test_unknown_template_ends_in_error_and_leaves_nothing`
- exec and files: `test_foreground_exec`, `test_background_process_list_stream_and_kill`,
  `test_files_roundtrip`
- snapshots: `test_snapshot_lifecycle` (live snapshot, a capsule from it, another team refused)
- WebSockets: `test_exec_stream`, `test_pty_start_input_resize_and_reattach`
- template start commands: `test_every_capsule_of_the_template_runs_its_service_when_running` (a
  build's microvm snapshot restores the service running; a snapshot of its capsule too)

Left out: `test_create_runs_and_destroy_keeps_the_record` (asserts create → running in < 10 s,
which a cold boot under TCG on a loaded 2-core machine does not always meet), the tenancy, fault,
host and numbers files (runtime-independent control-plane behaviour, or namespace-specific
numbers), and PostgreSQL (the database does not change what the runtime does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.control_plane.admin_capsules.conftest import admin, admin_tenant
from tests.control_plane.builds.test_start_commands import (
    test_every_capsule_of_the_template_runs_its_service_when_running,
)
from tests.control_plane.capsules.conftest import (
    Env,
    ServerThread,
    _destroy_all,
    _make_tenant,
    api,
    cache_dir_of,
    capsules,
    make_settings,
    other,
    scratch_database,
    scratch_root,
    shared_capsule,
)
from tests.control_plane.capsules.test_exec_files import (
    test_background_process_list_stream_and_kill,
    test_files_roundtrip,
    test_foreground_exec,
)
from tests.control_plane.capsules.test_lifecycle import (
    test_create_then_first_exec,
    test_pause_resume_and_wrong_state_409s,
    test_unknown_template_ends_in_error_and_leaves_nothing,
)
from tests.control_plane.capsules.test_snapshots import test_snapshot_lifecycle
from tests.control_plane.capsules.test_websockets import test_exec_stream, test_pty_start_input_resize_and_reattach
from wrenn_platform.host_agent.runtime.microvm import disk
from wrenn_platform.host_agent.templates import TemplateInfo

pytestmark = [pytest.mark.vm, pytest.mark.root]

__all__ = [
    "admin",
    "admin_tenant",
    "api",
    "capsules",
    "other",
    "shared_capsule",
    "test_background_process_list_stream_and_kill",
    "test_create_then_first_exec",
    "test_every_capsule_of_the_template_runs_its_service_when_running",
    "test_exec_stream",
    "test_files_roundtrip",
    "test_foreground_exec",
    "test_pause_resume_and_wrong_state_409s",
    "test_pty_start_input_resize_and_reattach",
    "test_snapshot_lifecycle",
    "test_unknown_template_ends_in_error_and_leaves_nothing",
]

API_DEFAULT_DISK_MB = 5120  # the API's default disk_size_mb


@pytest.fixture(scope="package")
def env(minimal_template: TemplateInfo) -> Iterator[Env]:
    """As the suite's `env`, with `runtime="microvm"` and SQLite only."""
    cache_dir = cache_dir_of(minimal_template)
    # Build the base image the capsules will use before the clock of any test starts.
    disk.ensure_base_image(cache_dir / "microvm", minimal_template.path, API_DEFAULT_DISK_MB)
    with scratch_root() as root, scratch_database("sqlite", root) as database_url:
        a = asyncio.run(_make_tenant(database_url, with_session=True))
        b = asyncio.run(_make_tenant(database_url, with_session=False))
        server = ServerThread(make_settings(root / "data", database_url, cache_dir, runtime="microvm"))
        server.start()
        environment = Env(server=server, database_url=database_url, a=a, b=b)
        try:
            yield environment
        finally:
            try:
                _destroy_all(environment)
            finally:
                server.stop()


def test_the_server_runs_microvm_capsules(env: Env, shared_capsule: str) -> None:
    import httpx

    with httpx.Client(base_url=env.url, headers=env.a.headers(), timeout=60) as c:
        cap = c.get(f"/v1/capsules/{shared_capsule}").json()
    assert cap["status"] == "running"
    assert cap["guest_ip"] == "192.168.127.2", cap
