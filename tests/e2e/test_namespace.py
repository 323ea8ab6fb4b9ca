"""The shipped server on the namespace runtime: lifecycle answers, the PTY as the published client
speaks it, the capsule's default user and git, a data directory capsules cannot reach, and every
failed operation visible in the log, in an event and on the capsule (`metadata.error`).

Failures are forced from the host (root): a template whose envd cannot start, a read-only bind
over the capsule's freezer state (pause, resume), a mount inside the capsule's state directory
(destroy), a read-only file system where the team's snapshots are written (snapshot).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from ..server_process import WRENN, free_port
from .conftest import Shipped, create_running, find_event, log_lines, mounted, sh, wait_status

pytestmark = pytest.mark.root

TIMEOUT = 30


def _freezer_state(capsule_id: str) -> str:
    return f"/sys/fs/cgroup/freezer/wrenn/{capsule_id}/freezer.state"


def _read_only_copy(root: Path, content: str) -> Path:
    path = root / f"ro-{secrets.token_hex(4)}"
    path.write_text(content)
    return path


def _assert_visible(shipped: Shipped, capsule: dict[str, Any], action: str, reason: str) -> None:
    """The failure of `action` on `capsule`: its reason in the log (WARNING, with the capsule id),
    in the `capsule.<action>` event and in the capsule's `metadata.error`."""
    capsule_id = capsule["id"]
    assert reason in (capsule.get("metadata") or {}).get("error", ""), capsule
    logged = log_lines(shipped, "WARNING", capsule_id, f"{action} of capsule", reason)
    assert logged, f"no WARNING about the failed {action} of {capsule_id} in the server log"
    event = find_event(shipped, lambda e: e.get("event") == f"capsule.{action}" and e.get("outcome") == "error"
                       and (e.get("resource") or {}).get("id") == capsule_id)
    assert reason in event["error"], event


# ---- lifecycle answers ---------------------------------------------------------------------------


def test_pause_resume_destroy_answer_with_the_settled_state(api: httpx.Client) -> None:
    cap = create_running(api, metadata={"job": "e2e"})
    paused = api.post(f"/v1/capsules/{cap['id']}/pause")
    assert paused.status_code == 202 and paused.json()["status"] == "paused", paused.text
    resumed = api.post(f"/v1/capsules/{cap['id']}/resume")
    assert resumed.status_code == 202 and resumed.json()["status"] == "running", resumed.text
    assert sh(api, cap["id"], "echo back")["stdout"] == "back\n"
    gone = api.delete(f"/v1/capsules/{cap['id']}")
    assert gone.status_code == 202 and gone.headers["content-type"] == "application/json", gone.text
    assert (gone.json()["id"], gone.json()["status"], gone.json()["metadata"]["job"]) == (cap["id"], "stopped", "e2e")
    again = api.delete(f"/v1/capsules/{cap['id']}")  # idempotent
    assert again.status_code == 202 and again.json()["status"] == "stopped", again.text
    assert api.post(f"/v1/capsules/{cap['id']}/pause").status_code == 409


# ---- inside the capsule ----------------------------------------------------------------------------


def test_default_user_is_root_and_git_init_makes_main(api: httpx.Client) -> None:
    cap = create_running(api)
    out = sh(api, cap["id"], "id -un; echo $HOME; cd $HOME && git init -q repo && git -C repo symbolic-ref HEAD")
    assert (out["exit_code"], out["stdout"]) == (0, "root\n/root\nrefs/heads/main\n"), out
    as_user = sh(api, cap["id"], "runuser -u user -- sh -c 'id -un; git init -q /tmp/u && git -C /tmp/u branch "
                                 "--show-current'")
    assert as_user["stdout"] == "user\nmain\n", as_user


def test_a_capsule_sees_its_own_memory_and_cpus(api: httpx.Client) -> None:
    """What runtimes that size themselves read (`free`, /proc/meminfo, nproc, os.cpu_count(),
    /proc/cpuinfo) is the capsule's 512 MB and 1 vCPU, not this host's memory and CPUs."""
    cap = create_running(api, memory_mb=512, vcpus=1)
    assert cap["metadata"]["proc_views"] == "lxcfs", cap["metadata"]
    out = sh(api, cap["id"], "free -m | awk '/^Mem:/ {print $2}'; awk '/^MemTotal/ {print $2}' /proc/meminfo; nproc; "
                             "python3 -c 'import os; print(os.cpu_count(), len(os.sched_getaffinity(0)))'; "
                             "grep -c ^processor /proc/cpuinfo")
    assert out["exit_code"] == 0, out
    free_mb, meminfo_kib, nproc, cpu_count, affinity, processors = out["stdout"].split()
    assert 500 <= int(free_mb) <= 512 and int(meminfo_kib) == 512 * 1024, out
    host_cpus = len(os.sched_getaffinity(0))
    assert [nproc, cpu_count, affinity, processors] == ["1"] * 4 or host_cpus == 1, out


def _pty(shipped: Shipped, capsule_id: str) -> ClientConnection:
    return connect(shipped.url.replace("http://", "ws://") + f"/v1/capsules/{capsule_id}/pty",
                   additional_headers=shipped.account.headers(), open_timeout=TIMEOUT)


def _text_until(ws: ClientConnection, marker: str, binary: bool) -> str:
    """PTY output until `marker` appears as output (not as the echoed command)."""
    text = ""
    deadline = time.monotonic() + TIMEOUT
    while marker not in text.replace(f"echo {marker}", ""):
        frame = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(frame, bytes):
            assert binary, "binary output before the client sent a binary frame"
            text += frame.decode(errors="replace")
        else:
            msg = json.loads(frame)
            assert msg["type"] != "error", msg
            if msg["type"] == "output":
                assert not binary, "JSON output after the client sent binary frames"
                text += base64.b64decode(msg["data"]).decode(errors="replace")
    return text


def test_pty_binary_frames_are_keystrokes_and_text_frames_the_contract(shipped: Shipped, api: httpx.Client) -> None:
    cap = create_running(api)
    marker = secrets.token_hex(4)
    with _pty(shipped, cap["id"]) as ws:  # as the published client: JSON start, keystrokes as bytes
        ws.send(json.dumps({"type": "start", "cmd": "/bin/sh", "cols": 80, "rows": 24}))
        started = json.loads(ws.recv(timeout=TIMEOUT))
        assert started["type"] == "started" and started["pid"] > 0, started
        ws.send(f"echo {marker}-bin\n".encode())
        _text_until(ws, f"{marker}-bin", binary=True)
        ws.send(json.dumps({"type": "resize", "cols": 100, "rows": 30}))
        ws.send(b"stty size\n")
        assert "30 100" in _text_until(ws, "30 100", binary=True)
        ws.send(json.dumps({"type": "pong"}))  # the published client's answer to our ping: no error
        ws.send(f"echo {marker}-after-pong\n".encode())
        _text_until(ws, f"{marker}-after-pong", binary=True)
    with _pty(shipped, cap["id"]) as ws:  # the contract's client: JSON both ways, base64 data
        ws.send(json.dumps({"type": "connect", "tag": started["tag"]}))
        assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "started"
        ws.send(json.dumps({"type": "input", "data": base64.b64encode(f"echo {marker}-json\n".encode()).decode()}))
        _text_until(ws, f"{marker}-json", binary=False)
        ws.send(json.dumps({"type": "kill"}))
    with _pty(shipped, cap["id"]) as ws:  # a client that watches first gets JSON, until it types bytes
        ws.send(json.dumps({"type": "start", "cmd": "/bin/sh"}))
        assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "started"
        prompt = json.loads(ws.recv(timeout=TIMEOUT))
        assert prompt["type"] == "output" and base64.b64decode(prompt["data"]), prompt
        ws.send(f"echo {marker}-late\n".encode())
        deadline = time.monotonic() + TIMEOUT
        while True:
            frame = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            if isinstance(frame, bytes) and f"{marker}-late" in frame.decode(errors="replace").replace(
                    f"echo {marker}-late", ""):
                break
            assert isinstance(frame, bytes) or json.loads(frame)["type"] in ("output", "ping"), frame
        ws.send(json.dumps({"type": "kill"}))
    api.delete(f"/v1/capsules/{cap['id']}")


def test_a_data_dir_capsules_cannot_reach_is_refused_at_start() -> None:
    locked = Path(tempfile.mkdtemp())  # mode 0700, as `mktemp -d` makes it
    try:
        proc = subprocess.run([str(WRENN), "server", "--data-dir", str(locked), "--port", str(free_port()),
                               "--runtime", "namespace"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"{locked} has mode 0700" in proc.stderr and f"chmod o+x {locked}" in proc.stderr, proc.stderr
        assert list(locked.iterdir()) == []  # refused before making anything
    finally:
        locked.rmdir()


# ---- every failure visible -------------------------------------------------------------------------


def test_a_failed_create_is_visible(shipped: Shipped, api: httpx.Client) -> None:
    """A template whose envd cannot start: a snapshot of a capsule whose envd launcher fails."""
    source = create_running(api)
    broken = "#!/bin/sh\necho 'this envd refuses to start' >&2\nexit 3\n"
    write = api.post(f"/v1/capsules/{source['id']}/exec", json={
        "cmd": "/bin/sh", "args": ["-c", 'printf "%s" "$1" > /usr/local/bin/wrenn-envd', "sh", broken]})
    assert write.status_code == 200 and write.json()["exit_code"] == 0, write.text
    name = f"no-envd-{secrets.token_hex(3)}"
    snap = api.post("/v1/snapshots", json={"sandbox_id": source["id"], "name": name})
    assert snap.status_code in (200, 201), snap.text
    resp = api.post("/v1/capsules", json={"template": name})
    assert resp.status_code == 202, resp.text
    failed = wait_status(api, resp.json()["id"], "error")
    _assert_visible(shipped, failed, "create", "envd did not start")
    assert "this envd refuses to start" in failed["metadata"]["error"]  # its console, in the reason


def test_a_failed_pause_then_resume_are_visible_and_cleared_by_success(shipped: Shipped, api: httpx.Client) -> None:
    cap = create_running(api)
    blocker = _read_only_copy(shipped.root, "THAWED\n")
    with mounted("--bind", "-o", "ro", str(blocker), _freezer_state(cap["id"])):
        answer = api.post(f"/v1/capsules/{cap['id']}/pause")
        assert answer.status_code == 202, answer.text
        failed = wait_status(api, cap["id"], "running") if answer.json()["status"] != "running" else answer.json()
    _assert_visible(shipped, failed, "pause", "Read-only file system")
    paused = api.post(f"/v1/capsules/{cap['id']}/pause").json()  # then clear: it works, the error goes
    assert paused["status"] == "paused" and "error" not in (paused["metadata"] or {}), paused

    with mounted("--bind", "-o", "ro", str(blocker), _freezer_state(cap["id"])):
        answer = api.post(f"/v1/capsules/{cap['id']}/resume")
        assert answer.status_code == 202, answer.text
        failed = wait_status(api, cap["id"], "paused") if answer.json()["status"] != "paused" else answer.json()
    _assert_visible(shipped, failed, "resume", "Read-only file system")
    resumed = api.post(f"/v1/capsules/{cap['id']}/resume").json()
    assert resumed["status"] == "running" and "error" not in (resumed["metadata"] or {}), resumed
    assert sh(api, cap["id"], "echo alive")["stdout"] == "alive\n"


def test_a_failed_snapshot_is_visible(shipped: Shipped, api: httpx.Client) -> None:
    cap = create_running(api)
    templates = shipped.server.data_dir / "templates" / shipped.account.team_id
    templates.mkdir(parents=True, exist_ok=True)
    name = f"never-{secrets.token_hex(3)}"
    with mounted("-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(templates)):
        resp = api.post("/v1/snapshots", json={"sandbox_id": cap["id"], "name": name})
    assert resp.status_code >= 400, resp.text  # the caller hears it at once
    failed = api.get(f"/v1/capsules/{cap['id']}").json()
    assert failed["status"] == "running"
    reason = "Read-only file system"
    assert reason in failed["metadata"]["error"], failed
    assert log_lines(shipped, "WARNING", f"snapshot of capsule {cap['id']}", reason)
    event = find_event(shipped, lambda e: e.get("event") == "template.snapshot.create" and e.get("outcome") == "error"
                       and (e.get("resource") or {}).get("id") == name)
    assert reason in event["error"] and cap["id"] in event["error"], event
    assert name not in [t["name"] for t in api.get("/v1/snapshots").json()]


def test_a_failed_destroy_is_visible(shipped: Shipped, api: httpx.Client) -> None:
    cap = create_running(api)
    squatter = shipped.server.data_dir / "namespace" / cap["id"] / "squatter"
    squatter.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(squatter)):
        answer = api.delete(f"/v1/capsules/{cap['id']}")
        assert answer.status_code == 202, answer.text
        failed = answer.json() if answer.json()["status"] != "stopping" else \
            wait_status(api, cap["id"], "error", "running", "missing")
        assert failed["status"] != "stopped", failed
        _assert_visible(shipped, failed, "destroy", "still mounted")
    gone = api.delete(f"/v1/capsules/{cap['id']}")  # with the mount gone, it can be destroyed after all
    assert gone.status_code == 202, gone.text
    assert wait_status(api, cap["id"], "stopped")["status"] == "stopped"
