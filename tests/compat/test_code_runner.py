"""The published client's code runner, as published: `wrenn.code_runner.Capsule().run_code(...)` boots
`code-runner-beta` and talks to its Jupyter Server through the port proxy
(`8888-{id}.localhost:{port}`, so the client's base URL names `localhost`): stdout and stderr, the
last expression's value, a matplotlib PNG, a pandas HTML table, an error with name, value and
traceback, state kept across calls, a timeout, and two capsules' kernels side by side.

Needs the port proxy (`WRENN_PROXY_DOMAIN`, default the host of the public URL) and `*.localhost`
resolving to loopback (libnss-myhostname, `scripts/install-system-deps`)."""

from __future__ import annotations

import base64

import pytest

from ..e2e.conftest import Shipped
from .published_client import PublishedClient

pytestmark = pytest.mark.root

PLATFORM_TEMPLATES = ("code-runner-beta",)  # served by this module's server besides `minimal`


@pytest.fixture(scope="module")
def runner_client(shipped: Shipped, client: PublishedClient) -> PublishedClient:
    # Proxy URLs are built from the base URL's host: `localhost`, whose subdomains resolve to loopback.
    return PublishedClient(python=client.python, base_url=f"http://localhost:{shipped.server.port}",
                           api_key=client.api_key)


def test_run_code_end_to_end(runner_client: PublishedClient) -> None:
    seen = runner_client.run("""
        import time
        from wrenn.code_runner import Capsule

        started = time.monotonic()
        capsule = Capsule(wait=True)
        try:
            first = capsule.run_code(
                "import sys\\nx = 41\\nprint('to stdout')\\nprint('to stderr', file=sys.stderr)\\nx + 1")
            first_result_s = time.monotonic() - started
            plot = capsule.run_code("import matplotlib.pyplot as plt\\nplt.plot([1, 3, 2])\\nplt.show()")
            frame = capsule.run_code("import pandas as pd\\npd.DataFrame({'n': [1, 2], 'square': [1, 4]})")
            error = capsule.run_code("1 / 0")
            kept = capsule.run_code("x * 2")
            slow_started = time.monotonic()
            try:  # 0.3.0 with its httpx-ws raises queue.Empty where it means to catch a TimeoutError
                slow = capsule.run_code("import time\\ntime.sleep(20)", timeout=2)
                slow_outcome = [slow.timed_out, slow.error.name if slow.error else None]
            except Exception as exc:
                slow_outcome = [type(exc).__name__]
            slow_s = time.monotonic() - slow_started
            emit(first_text=first.text, stdout=first.logs.stdout, stderr=first.logs.stderr,
                 first_error=first.error, first_result_s=first_result_s,
                 pngs=[r.png for r in plot.results if r.png], plot_error=plot.error,
                 html=[r.html for r in frame.results if r.is_main_result], frame_text=frame.text,
                 error=[error.error.name, error.error.value, error.error.traceback] if error.error else None,
                 kept=kept.text, slow_outcome=slow_outcome, slow_s=slow_s)
        finally:
            capsule.destroy()
    """, timeout=300)
    assert seen["first_error"] is None, seen
    assert seen["first_text"] == "42" and seen["stdout"] == ["to stdout\n"] and seen["stderr"] == ["to stderr\n"], seen
    assert seen["plot_error"] is None and len(seen["pngs"]) == 1, seen
    assert base64.b64decode(seen["pngs"][0]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "<table" in seen["html"][0] and "square" in seen["frame_text"], seen
    name, value, traceback = seen["error"]
    assert (name, value) == ("ZeroDivisionError", "division by zero") and "ZeroDivisionError" in traceback
    assert seen["kept"] == "82"  # state kept across calls, the error included
    # The client stops waiting at its timeout: as designed (timed out), or as 0.3.0 does (queue.Empty).
    assert seen["slow_outcome"] in ([True, "Timeout"], ["Empty"]) and 2 <= seen["slow_s"] < 10, seen


def test_two_code_runner_capsules_side_by_side(runner_client: PublishedClient) -> None:
    seen = runner_client.run("""
        from wrenn.code_runner import Capsule

        first, second = Capsule(wait=True), Capsule(wait=True)
        try:
            first.run_code("who = 'first'")
            second.run_code("who = 'second'")
            emit(answers=[first.run_code("who").text, second.run_code("who").text])
        finally:
            first.destroy()
            second.destroy()
    """, timeout=300)
    assert seen["answers"] == ["'first'", "'second'"], seen
