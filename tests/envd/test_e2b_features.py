"""What E2B's client calls beyond the rest of the protocol: the polling watcher, signed file URLs,
GET /envs, and a Connect deadline that ends the stream but not the process. Spoken as the client
speaks it (Connect JSON over plain HTTP), against a real envd process."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx

from .conftest import TOKEN, EnvdProcess


def _rpc(envd: EnvdProcess, method: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{envd.url}/filesystem.Filesystem/{method}", json=body,
                      headers={"X-Access-Token": TOKEN}, timeout=10)


def _events(envd: EnvdProcess, watcher_id: str) -> list[tuple[str, str]]:
    answer = _rpc(envd, "GetWatcherEvents", {"watcherId": watcher_id})
    assert answer.status_code == 200, answer.text
    return [(e["name"], e["type"]) for e in answer.json().get("events", [])]


def test_polling_watcher_reports_changes_between_calls(envd: EnvdProcess, workdir: Path) -> None:
    created = _rpc(envd, "CreateWatcher", {"path": str(workdir), "recursive": True})
    assert created.status_code == 200, created.text
    watcher_id = created.json()["watcherId"]
    assert _events(envd, watcher_id) == []
    (workdir / "a.txt").write_text("x")
    (workdir / "sub").mkdir()
    events = _events(envd, watcher_id)
    assert ("a.txt", "EVENT_TYPE_CREATE") in events and ("sub", "EVENT_TYPE_CREATE") in events
    (workdir / "sub" / "deep.txt").write_text("y")  # the new directory is watched from the last call on
    assert ("sub/deep.txt", "EVENT_TYPE_CREATE") in _events(envd, watcher_id)
    (workdir / "quick" / "er").mkdir(parents=True)  # created before any call could watch it
    (workdir / "quick" / "er" / "file").write_text("z")
    quick = _events(envd, watcher_id)
    assert ("quick/er", "EVENT_TYPE_CREATE") in quick and ("quick/er/file", "EVENT_TYPE_CREATE") in quick
    (workdir / "a.txt").unlink()
    assert _events(envd, watcher_id) == [("a.txt", "EVENT_TYPE_REMOVE")]

    assert _rpc(envd, "RemoveWatcher", {"watcherId": watcher_id}).status_code == 200
    gone = _rpc(envd, "GetWatcherEvents", {"watcherId": watcher_id})
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"


def test_polling_watcher_refuses_what_it_cannot_watch(envd: EnvdProcess, workdir: Path) -> None:
    missing = _rpc(envd, "CreateWatcher", {"path": str(workdir / "nope")})
    assert missing.status_code == 404, missing.text
    (workdir / "file").write_text("")
    not_dir = _rpc(envd, "CreateWatcher", {"path": str(workdir / "file")})
    assert not_dir.status_code == 400, not_dir.text
    unknown = _rpc(envd, "RemoveWatcher", {"watcherId": "0000"})
    assert unknown.status_code == 404, unknown.text


def _signed(path: str, operation: str, expires_in: int | None, token: str = TOKEN, user: str = "") -> dict[str, str]:
    """E2B's client's `get_signature` (e2b/sandbox/signature.py), written out."""
    expiration = int(time.time()) + expires_in if expires_in is not None else None
    raw = f"{path}:{operation}:{user}:{token}" + (f":{expiration}" if expiration is not None else "")
    query = {"path": path, "signature": "v1_" + base64.b64encode(hashlib.sha256(raw.encode()).digest())
             .decode().rstrip("=")}
    if user:
        query["username"] = user
    if expiration is not None:
        query["signature_expiration"] = str(expiration)
    return query


def _url(envd: EnvdProcess, query: dict[str, str]) -> str:
    return f"{envd.url}/files?{urlencode(query, quote_via=quote)}"


def test_signed_urls_stand_in_for_the_token(envd: EnvdProcess, workdir: Path) -> None:
    target = workdir / "signed.bin"
    upload = httpx.post(_url(envd, _signed(str(target), "write", 60)), content=b"up\xff",
                        headers={"Content-Type": "application/octet-stream"})
    assert upload.status_code == 200, upload.text
    assert target.read_bytes() == b"up\xff"
    download = httpx.get(_url(envd, _signed(str(target), "read", None)))
    assert download.status_code == 200 and download.content == b"up\xff"

    refused = [
        _signed(str(target), "write", 60),  # a write signature does not read
        _signed(str(target), "read", -5),  # expired
        _signed(str(target), "read", 60, token="another-token"),
        {**_signed(str(target), "read", 60), "path": str(workdir / "other")},  # signed for another path
        {"path": str(target), "signature": "v1_"},
    ]
    for query in refused:
        answer = httpx.get(_url(envd, query))
        assert answer.status_code == 401, (query, answer.text)
    rpc = httpx.post(f"{envd.url}/filesystem.Filesystem/Stat?" + urlencode(_signed(str(target), "read", 60)),
                     json={"path": str(target)})
    assert rpc.status_code == 401  # a signature opens /files only


def test_envs_lists_the_env_vars_init_set(start_envd: object) -> None:
    envd: EnvdProcess = start_envd()  # type: ignore[operator]
    init = httpx.post(f"{envd.url}/init", json={"envVars": {"FOO": "bar"}}, headers={"X-Access-Token": TOKEN})
    assert init.status_code == 204
    answer = httpx.get(f"{envd.url}/envs", headers={"X-Access-Token": TOKEN})
    assert answer.status_code == 200 and answer.json() == {"FOO": "bar"}
    assert httpx.get(f"{envd.url}/envs").status_code == 401


def _stream(envd: EnvdProcess, method: str, message: dict[str, object],
            timeout_ms: int | None = None) -> list[dict[str, object]]:
    body = json.dumps(message).encode()
    headers = {"X-Access-Token": TOKEN, "Content-Type": "application/connect+json"}
    if timeout_ms is not None:
        headers["Connect-Timeout-Ms"] = str(timeout_ms)
    answer = httpx.post(f"{envd.url}/process.Process/{method}", content=struct.pack(">BI", 0, len(body)) + body,
                        headers=headers, timeout=30)
    data, out = answer.content, []
    while data:
        _, length = struct.unpack(">BI", data[:5])
        out.append(json.loads(data[5:5 + length]))
        data = data[5 + length:]
    return out


def test_connect_deadline_ends_the_stream_and_the_process_runs_on(envd: EnvdProcess) -> None:
    begun = time.monotonic()
    with httpx.Client(timeout=30) as http:
        body = json.dumps({"process": {"cmd": "/bin/sleep", "args": ["30"]}, "tag": "e2b-deadline"}).encode()
        with http.stream("POST", f"{envd.url}/process.Process/Start",
                         content=struct.pack(">BI", 0, len(body)) + body,
                         headers={"X-Access-Token": TOKEN, "Content-Type": "application/connect+json"}) as start:
            next(start.iter_bytes())  # the start event: the process runs
            events = _stream(envd, "Connect", {"process": {"tag": "e2b-deadline"}}, timeout_ms=500)
            assert time.monotonic() - begun < 10
            assert events[0] == {"event": {"start": {"pid": events[0]["event"]["start"]["pid"]}}}  # type: ignore[index]
            assert events[-1]["error"]["code"] == "deadline_exceeded"  # type: ignore[index]
            assert not any("end" in e.get("event", {}) for e in events)  # type: ignore[attr-defined]
            listed = httpx.post(f"{envd.url}/process.Process/List", json={}, headers={"X-Access-Token": TOKEN})
            assert "e2b-deadline" in [p.get("tag") for p in listed.json()["processes"]]
            killed = httpx.post(f"{envd.url}/process.Process/SendSignal", json={
                "process": {"tag": "e2b-deadline"}, "signal": "SIGNAL_SIGKILL"}, headers={"X-Access-Token": TOKEN})
            assert killed.status_code == 200


def test_upload_metadata_is_kept_as_xattrs_and_listed(envd: EnvdProcess, workdir: Path) -> None:
    target = workdir / "tagged.txt"
    headers = {"X-Access-Token": TOKEN, "Content-Type": "application/octet-stream",
               "X-Metadata-Owner": "alice", "X-Metadata-stage": "raw data"}
    upload = httpx.post(f"{envd.url}/files", params={"path": str(target)}, content=b"x", headers=headers)
    assert upload.status_code == 200, upload.text
    assert upload.json()[0]["metadata"] == {"owner": "alice", "stage": "raw data"}  # keys lowercased
    assert os.getxattr(target, "user.e2b.owner") == b"alice"
    stat = _rpc(envd, "Stat", {"path": str(target)})
    assert stat.json()["entry"]["metadata"] == {"owner": "alice", "stage": "raw data"}
    listed = _rpc(envd, "ListDir", {"path": str(workdir)}).json()["entries"]
    assert [e.get("metadata") for e in listed if e["name"] == "tagged.txt"] == [{"owner": "alice", "stage": "raw data"}]

    plain = httpx.post(f"{envd.url}/files", params={"path": str(target)}, content=b"y",
                       headers={"X-Access-Token": TOKEN, "Content-Type": "application/octet-stream"})
    assert "metadata" not in plain.json()[0]  # a new upload replaces the file, and its metadata
    assert "metadata" not in _rpc(envd, "Stat", {"path": str(target)}).json()["entry"]

    bad = httpx.post(f"{envd.url}/files", params={"path": str(workdir / "bad")}, content=b"z",
                     headers={**headers, "X-Metadata-Bad": "tab\there"})
    assert bad.status_code == 400 and not (workdir / "bad").exists()
