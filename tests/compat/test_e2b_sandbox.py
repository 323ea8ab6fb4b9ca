"""E2B's `Sandbox` lifecycle from the published `e2b` client, configured by environment variables
alone: create, get_info, list (metadata filter, state, paging), set_timeout, the timeout's end
(kill, or pause with `on_timeout: pause`), pause + connect-resume, metrics, snapshots, kill."""

from __future__ import annotations

import pytest

from .e2b_client import E2bClient

pytestmark = pytest.mark.root


def test_create_info_list_with_metadata_and_paging_then_kill(e2b: E2bClient) -> None:
    seen = e2b.run("""
        import datetime, uuid
        from e2b import Sandbox, SandboxQuery, SandboxState
        from e2b.exceptions import NotFoundException

        run = uuid.uuid4().hex[:8]
        boxes = [Sandbox.create(timeout=300, metadata={"run": run, "n": str(i)}) for i in range(3)]
        other = Sandbox.create(timeout=300, metadata={"run": "other"})
        info = boxes[0].get_info()
        pages, paginator = [], Sandbox.list(query=SandboxQuery(metadata={"run": run}), limit=2)
        while paginator.has_next:
            pages.append(sorted(s.sandbox_id for s in paginator.next_items()))
        one = Sandbox.list(query=SandboxQuery(metadata={"run": run, "n": "1"})).next_items()
        paused_only = Sandbox.list(query=SandboxQuery(metadata={"run": run}, state=[SandboxState.PAUSED])).next_items()
        by_template = len(Sandbox.list(query=SandboxQuery(metadata={"run": run}, template="base")).next_items())
        other_template = len(Sandbox.list(query=SandboxQuery(metadata={"run": run}, template="code-runner-beta"))
                             .next_items())
        soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
        future = len(Sandbox.list(query=SandboxQuery(metadata={"run": run}, started_after=soon)).next_items())
        before = boxes[1].get_info().end_at
        boxes[1].set_timeout(3600)
        after = boxes[1].get_info().end_at
        killed = [b.kill() for b in boxes + [other]]
        again = Sandbox.kill(boxes[0].sandbox_id)
        try:
            Sandbox.get_info(boxes[0].sandbox_id)
            gone = "still there"
        except NotFoundException as exc:
            gone = type(exc).__name__
        emit(ids=sorted(b.sandbox_id for b in boxes), other=other.sandbox_id, template=info.template_id,
             metadata=info.metadata, state=info.state.value, cpu=info.cpu_count, memory=info.memory_mb,
             lifetime=(info.end_at - info.started_at).total_seconds(), pages=pages,
             one=[(s.sandbox_id, s.metadata.get("n")) for s in one], paused_only=len(paused_only),
             by_template=by_template, other_template=other_template, future=future,
             extended=(after - before).total_seconds(), killed=killed, again=again, gone=gone,
             running=boxes[0].is_running())
    """)
    ids = seen["ids"]
    assert seen["template"] == "minimal"  # E2B's default template `base` is the platform's `minimal`
    assert seen["metadata"]["n"] == "0" and seen["state"] == "running"
    assert (seen["cpu"], seen["memory"]) == (1, 512)
    assert 295 <= seen["lifetime"] <= 305
    assert [len(p) for p in seen["pages"]] == [2, 1]  # limit 2: two pages through x-next-token
    assert sorted(i for page in seen["pages"] for i in page) == ids and seen["other"] not in str(seen["pages"])
    assert len(seen["one"]) == 1 and seen["one"][0][1] == "1" and seen["one"][0][0] in ids
    assert seen["paused_only"] == 0
    assert (seen["by_template"], seen["other_template"], seen["future"]) == (3, 0, 0)
    assert 3000 < seen["extended"] < 3600  # set_timeout: the end is now + 3600 s
    assert seen["killed"] == [True] * 4 and seen["again"] is False
    assert seen["gone"] == "SandboxNotFoundException" and seen["running"] is False


def test_timeout_kills_or_pauses_and_connect_resumes(e2b: E2bClient) -> None:
    seen = e2b.run("""
        import time
        from e2b import Sandbox, SandboxState

        doomed = Sandbox.create(timeout=2)
        keeper = Sandbox.create(timeout=2, lifecycle={"on_timeout": "pause"})
        keeper.files.write("/home/user/kept.txt", "still here")
        time.sleep(6)
        doomed_running = doomed.is_running()
        listed = [s.sandbox_id for s in Sandbox.list().next_items()]
        kept_state = Sandbox.get_info(keeper.sandbox_id).state.value
        back = Sandbox.connect(keeper.sandbox_id, timeout=60)
        content = back.files.read("/home/user/kept.txt")
        state_after = back.get_info().state.value
        back.kill()
        emit(doomed_running=doomed_running, doomed_listed=doomed.sandbox_id in listed, kept_state=kept_state,
             content=content, state_after=state_after)
    """)
    assert seen["doomed_running"] is False and seen["doomed_listed"] is False
    assert seen["kept_state"] == "paused"
    assert seen["content"] == "still here" and seen["state_after"] == "running"


def test_pause_keeps_processes_and_connect_resumes(e2b: E2bClient) -> None:
    seen = e2b.run("""
        from e2b import Sandbox

        sbx = Sandbox.create(timeout=300)
        sleeper = sbx.commands.run("sleep 600", background=True)
        sbx.files.write("/home/user/note.txt", "before pause")
        paused = sbx.pause()
        again = sbx.pause()
        state = sbx.get_info().state.value
        resumed = Sandbox.connect(sbx.sandbox_id)
        pids = [p.pid for p in resumed.commands.list()]
        note = resumed.files.read("/home/user/note.txt")
        echo = resumed.commands.run("echo after").stdout
        resumed.kill()
        emit(paused=paused, again=again, state=state, sleeper=sleeper.pid, pids=pids, note=note, echo=echo)
    """)
    assert (seen["paused"], seen["again"], seen["state"]) == (True, False, "paused")
    assert seen["sleeper"] in seen["pids"]
    assert seen["note"] == "before pause" and seen["echo"] == "after\n"


def test_metrics(e2b: E2bClient) -> None:
    seen = e2b.run("""
        import time
        from e2b import Sandbox

        with Sandbox.create(timeout=300) as sbx:
            sbx.commands.run("dd if=/dev/zero of=/home/user/blob bs=1M count=20")
            metrics = []
            for _ in range(60):
                metrics = sbx.get_metrics()
                if metrics:
                    break
                time.sleep(1)
            m = metrics[-1]
            emit(count=len(metrics), cpu_count=m.cpu_count, mem_total=m.mem_total, mem_used=m.mem_used,
                 disk_total=m.disk_total, disk_used=m.disk_used, cpu=m.cpu_used_pct)
    """, timeout=240)
    assert seen["count"] >= 1
    assert seen["cpu_count"] == 1 and seen["mem_total"] == 512 << 20
    assert 0 < seen["mem_used"] <= seen["mem_total"]
    assert seen["disk_total"] == 5120 << 20 and seen["disk_used"] > 0
    assert 0 <= seen["cpu"] <= 100


def test_snapshots(e2b: E2bClient) -> None:
    seen = e2b.run("""
        from e2b import Sandbox

        source = Sandbox.create(timeout=300)
        source.files.write("/home/user/state.txt", "snapshotted")
        snap = source.create_snapshot()
        listed = [s.snapshot_id for s in Sandbox.list_snapshots(sandbox_id=source.sandbox_id).next_items()]
        clone = Sandbox.create(snap.snapshot_id, timeout=300)
        content = clone.files.read("/home/user/state.txt")
        clone.kill()
        source.kill()
        deleted = Sandbox.delete_snapshot(snap.snapshot_id)
        deleted_again = Sandbox.delete_snapshot(snap.snapshot_id)
        emit(snapshot=snap.snapshot_id, names=snap.names, listed=listed, content=content, deleted=deleted,
             deleted_again=deleted_again)
    """, timeout=300)
    assert seen["listed"] == [seen["snapshot"]] and seen["names"] == [seen["snapshot"]]
    assert seen["content"] == "snapshotted"
    assert (seen["deleted"], seen["deleted_again"]) == (True, False)
