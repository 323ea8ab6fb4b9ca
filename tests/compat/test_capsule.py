"""`wrenn.Capsule` and `WrennClient.capsules` — create, wait, connect, get_info, list, ping,
metrics, pause, resume, destroy — from the published client against the shipped server."""

from __future__ import annotations

import pytest

from .published_client import PublishedClient

pytestmark = pytest.mark.root


def test_create_wait_info_list_ping_and_destroy(client: PublishedClient) -> None:
    seen = client.run("""
        from wrenn import Capsule, WrennClient

        capsule = Capsule(template="minimal", vcpus=1, memory_mb=256, timeout=0, wait=True)
        info = capsule.get_info()
        static_info = Capsule.get_info(capsule.capsule_id)
        listed = [c.id for c in Capsule.list()]
        capsule.ping()
        running = capsule.is_running()
        with WrennClient() as wrenn:
            from_client = wrenn.capsules.get(capsule.capsule_id)
        capsule.destroy(wait=True)
        after = Capsule.get_info(capsule.capsule_id)
        emit(id=capsule.capsule_id, status=info.status, static_status=static_info.status,
             template=info.template, vcpus=info.vcpus, memory_mb=info.memory_mb, listed=listed,
             running=running, client_id=from_client.id, created_at=info.created_at,
             after=after.status)
    """)
    assert seen["id"].startswith("cl-")
    assert (seen["status"], seen["static_status"], seen["running"]) == ("running", "running", True)
    assert (seen["template"], seen["vcpus"], seen["memory_mb"]) == ("minimal", 1, 256)
    assert seen["id"] in seen["listed"]
    assert seen["client_id"] == seen["id"]
    assert seen["created_at"]
    assert seen["after"] == "stopped"


def test_the_server_default_template_serves_a_capsule_made_without_arguments(client: PublishedClient) -> None:
    seen = client.run("""
        from wrenn import Capsule

        with Capsule(wait=True) as capsule:
            result = capsule.commands.run("echo ready")
            emit(template=capsule.get_info().template, stdout=result.stdout)
    """)
    assert seen == {"template": "minimal", "stdout": "ready\n"}


def test_pause_resume_and_connect_resumes_a_paused_capsule(client: PublishedClient) -> None:
    seen = client.run("""
        from wrenn import Capsule

        capsule = Capsule(wait=True)
        try:
            capsule.files.write("/tmp/kept.txt", "kept across pause")
            paused = capsule.pause(wait=True)
            status_paused = capsule.get_info().status
            resumed = capsule.resume(wait=True)
            after_resume = capsule.files.read("/tmp/kept.txt")
            Capsule.pause(capsule.capsule_id, wait=True)
            connected = Capsule.connect(capsule.capsule_id)
            connected_status = connected.get_info().status
            after_connect = connected.commands.run("cat /tmp/kept.txt").stdout
        finally:
            Capsule.destroy(capsule.capsule_id, wait=True)
        emit(paused=paused.status, status_paused=status_paused, resumed=resumed.status,
             after_resume=after_resume, connected_status=connected_status, after_connect=after_connect)
    """)
    assert seen["paused"] == seen["status_paused"] == "paused"
    assert seen["resumed"] == "running"
    assert seen["after_resume"] == "kept across pause"
    assert seen["connected_status"] == "running"
    assert seen["after_connect"] == "kept across pause"


def test_metrics_stats_and_usage(client: PublishedClient) -> None:
    seen = client.run("""
        import time
        from datetime import datetime, timedelta, timezone
        from wrenn import Capsule, WrennClient

        with Capsule(wait=True) as capsule, WrennClient() as wrenn:
            capsule.commands.run("head -c 20000000 /dev/urandom | sha256sum")
            deadline = time.monotonic() + 30
            while True:
                metrics = wrenn.capsules.metrics(capsule.capsule_id, range="10m")
                if metrics.points or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            stats = wrenn.capsules.stats(range="5m")
            today = datetime.now(timezone.utc).date()
            usage = wrenn.capsules.usage(from_=today - timedelta(days=6), to=today)
            points = metrics.points or []
            emit(metrics_id=metrics.sandbox_id, id=capsule.capsule_id, range=metrics.range, points=len(points),
                 mem=[p.mem_bytes for p in points], stamps=[p.timestamp_unix for p in points],
                 running_now=stats.current.running_count, vcpus_now=stats.current.vcpus_reserved,
                 usage_dates=[p.date for p in usage.points or []], usage_window=(usage.from_, usage.to), today=today)
    """)
    assert seen["metrics_id"] == seen["id"]
    assert seen["range"] == "10m"
    assert seen["points"] >= 1
    assert all(mem > 0 for mem in seen["mem"])
    assert seen["stamps"] == sorted(seen["stamps"])
    assert seen["running_now"] >= 1 and seen["vcpus_now"] >= 1
    # A week of days asked for, a week of days answered, today last.
    assert seen["usage_window"] == [seen["usage_dates"][0], seen["today"]]
    assert len(seen["usage_dates"]) == 7 and seen["usage_dates"][-1] == seen["today"]


def test_errors_arrive_as_the_clients_exceptions(client: PublishedClient) -> None:
    seen = client.run("""
        from wrenn import Capsule, WrennClient, WrennNotFoundError, WrennValidationError, WrennConflictError
        from wrenn import WrennAuthenticationError

        found = []
        try:
            Capsule.get_info("cl-doesnotexist")
        except WrennNotFoundError as exc:
            found.append(("not_found", exc.status_code, exc.code))
        with WrennClient() as wrenn:
            try:
                wrenn.capsules.create(vcpus=0)
            except WrennValidationError as exc:
                found.append(("validation", exc.status_code, exc.code))
            capsule = Capsule(wait=True)
            try:
                capsule.resume()
            except WrennConflictError as exc:
                found.append(("conflict", exc.status_code, exc.code))
            finally:
                capsule.destroy()
        try:
            WrennClient(api_key="wrn_not-a-key").capsules.list()
        except WrennAuthenticationError as exc:
            found.append(("auth", exc.status_code, exc.code))
        emit(found=found)
    """)
    assert seen["found"] == [["not_found", 404, "not_found"], ["validation", 400, "invalid_request"],
                             ["conflict", 409, "conflict"], ["auth", 401, "unauthorized"]]
