"""Snapshots (create, list, delete, a capsule from one) and the live event stream, from the
published client."""

from __future__ import annotations

import json
import time

import pytest

from .published_client import PublishedClient

pytestmark = pytest.mark.root


def test_snapshot_create_list_start_from_and_delete(client: PublishedClient) -> None:
    seen = client.run("""
        from wrenn import Capsule, WrennClient, WrennError, WrennNotFoundError

        with Capsule(wait=True) as source, WrennClient() as wrenn:
            source.files.write("/tmp/state.txt", "first")
            made = source.create_snapshot(name="compat-snap")
            source_after = source.get_info().status
            named_twice = None
            try:
                source.create_snapshot(name="compat-snap")
            except WrennError as exc:  # code already_exists: the client maps it to no subclass
                named_twice = (exc.status_code, exc.code)
            source.files.write("/tmp/state.txt", "from the snapshot")
            replaced = wrenn.snapshots.create(source.capsule_id, name="compat-snap", overwrite=True)
            unnamed = wrenn.snapshots.create(source.capsule_id)
            listed = {t.name: (t.type, t.platform) for t in wrenn.snapshots.list()}
            only_snapshots = sorted(t.name for t in wrenn.snapshots.list(type="snapshot"))
            child = Capsule(template="compat-snap", wait=True)
            inherited = child.files.read("/tmp/state.txt")
            child_template = child.get_info().template
            try:
                wrenn.snapshots.create(source.capsule_id, name="compat-snap", overwrite=True)
                replaced_in_use = None
            except WrennError as exc:
                replaced_in_use = (exc.status_code, type(exc).__name__)
            child.destroy(wait=True)  # a snapshot in use by a capsule cannot be deleted
            wrenn.snapshots.delete("compat-snap")
            wrenn.snapshots.delete(unnamed.name)
            after_delete = sorted(t.name for t in wrenn.snapshots.list(type="snapshot"))
            try:
                wrenn.snapshots.delete("compat-snap")
                deleted_again = None
            except WrennNotFoundError as exc:
                deleted_again = exc.status_code
        emit(made=(made.name, made.type, made.platform), source_after=source_after, named_twice=named_twice,
             replaced=replaced.name, unnamed=unnamed.name, listed=listed, only_snapshots=only_snapshots,
             inherited=inherited, child_template=child_template, replaced_in_use=replaced_in_use,
             after_delete=after_delete, deleted_again=deleted_again)
    """, timeout=300)
    assert seen["made"] == ["compat-snap", "snapshot", False]
    assert seen["source_after"] == "running"  # a live snapshot: the source keeps running
    assert seen["named_twice"] == [409, "already_exists"]
    assert seen["replaced"] == "compat-snap"  # overwrite=True replaced it: the child sees the later state
    assert seen["unnamed"] and seen["unnamed"] != "compat-snap"
    assert seen["listed"]["compat-snap"] == ["snapshot", False]
    assert seen["listed"]["minimal"] == ["base", True]
    assert seen["only_snapshots"] == sorted(["compat-snap", seen["unnamed"]])
    assert seen["inherited"] == "from the snapshot"
    assert seen["child_template"] == "compat-snap"
    assert seen["replaced_in_use"] == [409, "WrennConflictError"]  # not while a capsule runs from it
    assert seen["after_delete"] == []
    assert seen["deleted_again"] == 404


def test_event_stream_sees_a_capsules_life(client: PublishedClient) -> None:
    listener = """
        import sys
        from wrenn import WrennClient

        with WrennClient() as wrenn:
            for event in wrenn.events.stream():
                print(_json.dumps({"event": event.event, "outcome": event.outcome,
                                   "id": event.resource.id if event.resource else None,
                                   "status": event.sandbox.status if event.sandbox else None,
                                   "actor": event.actor.type if event.actor else None}, default=str), flush=True)
                if event.event == "capsule.destroy":
                    break
    """
    with client.popen(listener) as stream:
        assert stream.stdout is not None
        first = json.loads(stream.stdout.readline())
        assert first["event"] == "connected"
        made = client.run("""
            from wrenn import Capsule
            capsule = Capsule(wait=True)
            capsule.pause(wait=True)
            capsule.resume(wait=True)
            capsule.destroy(wait=True)
            emit(id=capsule.capsule_id)
        """)
        events = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = stream.stdout.readline()
            if not line:
                break
            events.append(json.loads(line))
            if events[-1]["event"] == "capsule.destroy":
                break
    mine = [(e["event"], e["outcome"]) for e in events if e["id"] == made["id"]]
    for expected in [("capsule.create", "success"), ("capsule.pause", "success"), ("capsule.resume", "success"),
                     ("capsule.destroy", "success")]:
        assert expected in mine, (expected, mine)
    assert {e["actor"] for e in events if e["id"] == made["id"] and e["event"] == "capsule.create"} == {"api_key"}
