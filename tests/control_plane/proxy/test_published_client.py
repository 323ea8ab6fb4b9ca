"""The published `wrenn` client's proxy flows, driven as published: `Capsule(...).get_url(port)`
gives `http://{port}-{id}.localhost:{server port}` for a client whose base URL is
`http://localhost:{server port}`; a server started in the capsule answers there, also after the
capsule was paused through the client. `wrenn.code_runner.Capsule().run_code(...)` boots
`code-runner-beta` and talks to its Jupyter Server (REST and the kernel WebSocket) through the
proxy: text, stdout, a matplotlib PNG, state across calls, errors."""

from __future__ import annotations

import asyncio
import base64
import sys

import httpx
import pytest

from wrenn_platform.host_agent.templates import TemplateInfo

from .conftest import STATIC_PORT, Server, proxy_server, wait_listening

sys.path.append("/tmp/clients/lib/python3.11/site-packages")  # the published clients, installed for reading

pytestmark = pytest.mark.root


def test_get_url_of_a_capsule_server(server: Server) -> None:
    from wrenn import Capsule

    base_url = f"http://localhost:{server.port}"
    capsule = Capsule(api_key=server.a.api_key, base_url=base_url, wait=True)
    try:
        capsule.files.write("/tmp/site/index.txt", "from the published client\n")
        capsule.commands.run(f"python3 -m http.server {STATIC_PORT} --directory /tmp/site", background=True)

        async def listening() -> None:
            async with server.api(server.a) as api:
                await wait_listening(api, capsule.capsule_id, STATIC_PORT)

        asyncio.run(listening())
        url = capsule.get_url(STATIC_PORT)
        assert url == f"http://{STATIC_PORT}-{capsule.capsule_id}.localhost:{server.port}"
        r = httpx.get(f"{url}/index.txt", timeout=30)
        assert r.status_code == 200 and r.text == "from the published client\n"

        capsule.pause(wait=True)
        r = httpx.get(f"{url}/index.txt", timeout=30)  # wakes it
        assert r.status_code == 200 and r.text == "from the published client\n"
        assert capsule.is_running()
    finally:
        capsule.destroy()


def test_run_code_through_the_proxy(minimal_template: TemplateInfo, code_runner_template: TemplateInfo) -> None:
    from wrenn.code_runner import Capsule as CodeRunner

    with proxy_server(minimal_template, others=(code_runner_template,)) as srv:
        runner = CodeRunner(api_key=srv.a.api_key, base_url=f"http://localhost:{srv.port}", wait=True)
        try:
            first = runner.run_code("x = 6 * 7\nprint('hi')\nx")
            assert first.error is None and first.logs.stdout == ["hi\n"], first
            assert [r.text for r in first.results] == ["42"]
            plot = runner.run_code("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
            assert plot.error is None and plot.results and plot.results[0].png, plot
            assert base64.b64decode(plot.results[0].png).startswith(b"\x89PNG")
            assert [r.text for r in runner.run_code("x + 1").results] == ["43"]  # state kept
            failed = runner.run_code("1 / 0")
            assert failed.error is not None and failed.error.name == "ZeroDivisionError", failed
        finally:
            runner.destroy()
