"""The shipped server with `--runtime microvm` (TCG here: every step takes seconds, so few tests):
pause, resume and snapshot through `wrenn server`, which runs uvloop (QEMU's device state is
handed over through an fd passed over QMP; that once failed only on uvloop), and a failed pause
visible in the log, an event and `metadata.error`."""

from __future__ import annotations

import json
import os
import secrets
import signal

import httpx
import pytest

from .conftest import Shipped, create_running, find_event, log_lines, sh, wait_status

pytestmark = [pytest.mark.root, pytest.mark.vm]

RUNTIME = "microvm"
BOOT_S = 300  # a TCG boot on a busy 2-core machine


def test_pause_resume_and_snapshot_through_the_shipped_server(api: httpx.Client) -> None:
    cap = create_running(api, within=BOOT_S)
    assert cap["metadata"]["runtime"] == "microvm"
    marker = secrets.token_hex(4)
    assert sh(api, cap["id"], f"echo {marker} > /root/note")["exit_code"] == 0
    ticker = api.post(f"/v1/capsules/{cap['id']}/exec", json={"cmd": "sleep", "args": ["3600"], "background": True})
    assert ticker.status_code == 202, ticker.text

    paused = api.post(f"/v1/capsules/{cap['id']}/pause")
    assert paused.status_code == 202 and paused.json()["status"] in ("pausing", "paused"), paused.text
    paused_now = wait_status(api, cap["id"], "paused", "running", within=BOOT_S)
    assert paused_now["status"] == "paused", paused_now  # not back to running with an error
    resumed = api.post(f"/v1/capsules/{cap['id']}/resume")
    assert resumed.status_code == 202 and resumed.json()["status"] in ("resuming", "running"), resumed.text
    wait_status(api, cap["id"], "running", within=BOOT_S)
    assert sh(api, cap["id"], "cat /root/note")["stdout"] == f"{marker}\n"
    pids = [p["pid"] for p in api.get(f"/v1/capsules/{cap['id']}/processes").json()["processes"]]
    assert ticker.json()["pid"] in pids  # the VM was restored, not rebooted

    name = f"mv-{marker}"
    snap = api.post("/v1/snapshots", json={"sandbox_id": cap["id"], "name": name})
    assert snap.status_code in (200, 201), snap.text
    clone = create_running(api, within=BOOT_S, template=name)
    assert sh(api, clone["id"], "cat /root/note")["stdout"] == f"{marker}\n"
    for capsule_id in (clone["id"], cap["id"]):
        gone = api.delete(f"/v1/capsules/{capsule_id}")
        assert gone.status_code == 202 and gone.json()["status"] in ("stopping", "stopped"), gone.text
        wait_status(api, capsule_id, "stopped", within=BOOT_S)


def test_a_failed_pause_is_visible(shipped: Shipped, api: httpx.Client) -> None:
    """QEMU stopped (SIGSTOP) cannot answer its monitor: the pause fails, the VM goes on after SIGCONT."""
    cap = create_running(api, within=BOOT_S)
    record = json.loads((shipped.server.data_dir / "microvm" / "capsules" / cap["id"] / "capsule.json").read_text())
    qemu_pid = int(record["pid"])
    os.kill(qemu_pid, signal.SIGSTOP)
    try:
        answer = api.post(f"/v1/capsules/{cap['id']}/pause")
        assert answer.status_code == 202, answer.text
        failed = wait_status(api, cap["id"], "running", "error", within=BOOT_S)
    finally:
        os.kill(qemu_pid, signal.SIGCONT)
    reason = failed["metadata"]["error"]
    assert "pause failed" in reason, failed
    assert log_lines(shipped, "WARNING", f"pause of capsule {cap['id']} failed")
    event = find_event(shipped, lambda e: e.get("event") == "capsule.pause" and e.get("outcome") == "error"
                       and (e.get("resource") or {}).get("id") == cap["id"])
    assert event["error"] == reason
