"""The published client's port proxy flows: `Capsule.get_url(port)` (a server started in the
capsule answers there, also after the capsule was paused through the client) and
`wrenn.code_runner.Capsule().run_code(...)`, which boots `code-runner-beta` and talks to its Jupyter
Server through the proxy. The client's base URL names `localhost`, so the `{port}-{id}.localhost`
names it builds resolve to this machine (libnss-myhostname)."""

from __future__ import annotations

import pytest

from ..e2e.conftest import Shipped
from .published_client import PublishedClient

pytestmark = pytest.mark.root

PLATFORM_TEMPLATES = ("code-runner-beta",)  # served by this module's server besides `minimal`
STATIC_PORT = 8001


@pytest.fixture(scope="module")
def by_name(shipped: Shipped, client: PublishedClient) -> PublishedClient:
    """The client with `WRENN_BASE_URL=http://localhost:PORT`."""
    return PublishedClient(python=client.python, base_url=f"http://localhost:{shipped.server.port}",
                           api_key=client.api_key)


def test_get_url_of_a_capsule_server(by_name: PublishedClient, shipped: Shipped) -> None:
    seen = by_name.run(f"""
        import time
        import httpx
        from wrenn import Capsule

        with Capsule(wait=True) as capsule:
            capsule.files.write("/tmp/site/index.txt", "from the published client\\n")
            capsule.commands.run("python3 -m http.server {STATIC_PORT} --directory /tmp/site", background=True)
            url = capsule.get_url({STATIC_PORT})
            deadline = time.monotonic() + 60
            while True:  # until the server in the capsule listens
                first = httpx.get(f"{{url}}/index.txt", timeout=30)
                if first.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            capsule.pause(wait=True)
            woken = httpx.get(f"{{url}}/index.txt", timeout=60)  # a request wakes it
            emit(id=capsule.capsule_id, url=url, first=(first.status_code, first.text),
                 woken=(woken.status_code, woken.text), running=capsule.is_running())
    """)
    assert seen["url"] == f"http://{STATIC_PORT}-{seen['id']}.localhost:{shipped.server.port}"
    assert seen["first"] == [200, "from the published client\n"]
    assert seen["woken"] == [200, "from the published client\n"]
    assert seen["running"] is True


def test_run_code_through_the_proxy(by_name: PublishedClient) -> None:
    seen = by_name.run("""
        import base64
        from wrenn.code_runner import Capsule as CodeRunner

        runner = CodeRunner(wait=True)
        try:
            first = runner.run_code("x = 6 * 7\\nprint('hi')\\nx")
            plot = runner.run_code("import matplotlib.pyplot as plt\\nplt.plot([1, 2, 3])\\nplt.show()")
            again = runner.run_code("x + 1")
            failed = runner.run_code("1 / 0")
        finally:
            runner.destroy()
        emit(first_error=first.error, stdout=first.logs.stdout, first=[r.text for r in first.results],
             plot_error=plot.error,
             png=bool(plot.results) and base64.b64decode(plot.results[0].png or "").startswith(b"\\x89PNG"),
             again=[r.text for r in again.results], failed=failed.error.name if failed.error else None)
    """, timeout=600)
    assert seen["first_error"] is None and seen["stdout"] == ["hi\n"] and seen["first"] == ["42"]
    assert seen["plot_error"] is None and seen["png"] is True
    assert seen["again"] == ["43"]  # state kept across calls
    assert seen["failed"] == "ZeroDivisionError"
