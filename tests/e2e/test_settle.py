"""Lifecycle answers past the settle wait (`WRENN_LIFECYCLE_SETTLE_SECONDS=0`): 202 with the transient
status, as the contract says, and the operation completes in the background; a destroy repeated
while the first is under way is answered, not refused."""

from __future__ import annotations

import httpx
import pytest

from .conftest import create_running, wait_status

pytestmark = pytest.mark.root

SERVER_ENV = {"WRENN_LIFECYCLE_SETTLE_SECONDS": "0"}


def test_answers_past_the_wait_show_the_transient_status(api: httpx.Client) -> None:
    cap = create_running(api)
    paused = api.post(f"/v1/capsules/{cap['id']}/pause")
    assert paused.status_code == 202 and paused.json()["status"] == "pausing", paused.text
    wait_status(api, cap["id"], "paused")
    resumed = api.post(f"/v1/capsules/{cap['id']}/resume")
    assert resumed.status_code == 202 and resumed.json()["status"] == "resuming", resumed.text
    wait_status(api, cap["id"], "running")
    first = api.delete(f"/v1/capsules/{cap['id']}")
    assert first.status_code == 202 and first.json()["status"] == "stopping", first.text
    second = api.delete(f"/v1/capsules/{cap['id']}")  # while stopping (or just stopped): same answer shape
    assert second.status_code == 202 and second.json()["status"] in ("stopping", "stopped"), second.text
    assert wait_status(api, cap["id"], "stopped")["id"] == cap["id"]
