"""`code-runner-beta` capsules on the shipped server (`wrenn server` as `make run` starts it):
`running` means Jupyter Server answers on 8888 (the template's start command and readiness probe),
without a token, with the `wrenn` kernelspec the published client asks for. Spoken to as that client
does (`tests/jupyter.py`), at the capsule's address from this host (the published client goes through
the port proxy: `tests/compat/`): stdout/stderr, the last expression's value, a matplotlib PNG, a
pandas HTML table, errors, state across cells, an interrupt, two kernels; no other capsule reaches it."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from ..jupyter import Kernel
from .conftest import Shipped, create_running, wait_status

PLATFORM_TEMPLATES = ("code-runner-beta",)
JUPYTER_PORT = 8888


@pytest.fixture(scope="module")
def jupyter(shipped: Shipped) -> Iterator[str]:
    """One running code-runner capsule; yields its Jupyter Server's base URL."""
    with shipped.client() as api:
        capsule = create_running(api, template="code-runner-beta")
        try:
            yield f"http://{capsule['host_ip']}:{JUPYTER_PORT}"
        finally:
            api.delete(f"/v1/capsules/{capsule['id']}")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30, trust_env=False) as c:
        yield c


@pytest.fixture
async def kernel(jupyter: str, http: httpx.AsyncClient) -> AsyncIterator[Kernel]:
    k = await Kernel.start(http, jupyter)
    try:
        yield k
    finally:
        await k.close()
        await http.delete(f"{jupyter}/api/kernels/{k.id}")


async def test_running_means_jupyter_answers_without_a_token_with_the_wrenn_kernel(
        jupyter: str, http: httpx.AsyncClient) -> None:
    # The published client's first calls, at once after `running`: no retry needed.
    listed = await http.get(f"{jupyter}/api/kernels")
    assert listed.status_code == 200, listed.text
    specs = (await http.get(f"{jupyter}/api/kernelspecs")).json()
    assert "wrenn" in specs["kernelspecs"] and specs["default"] == "wrenn", specs
    assert specs["kernelspecs"]["wrenn"]["spec"]["language"] == "python"


async def test_output_value_state_and_rich_results(kernel: Kernel, jupyter: str, http: httpx.AsyncClient) -> None:
    run = await kernel.run("import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\nx = 41\nx + 1")
    assert run.error is None, run.error
    assert "".join(run.stdout) == "to stdout\n" and "".join(run.stderr) == "to stderr\n", run
    assert run.text == "42"
    assert (await kernel.run("x * 2")).text == "82"  # state kept across cells
    assert (await kernel.run("import getpass; getpass.getuser()")).text == "'user'"  # the template's user

    plot = await kernel.run("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('wrenn')\nplt.show()")
    assert plot.error is None, plot.error
    pngs = [r["data"]["image/png"] for r in plot.results if "image/png" in r["data"]]
    assert len(pngs) == 1, plot.results
    png = base64.b64decode(pngs[0])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000, len(png)

    frame = await kernel.run("import numpy as np, pandas as pd\n"
                             "pd.DataFrame({'n': np.arange(3), 'square': np.arange(3) ** 2})")
    assert frame.error is None, frame.error
    main: dict[str, Any] = next(r["data"] for r in frame.results if r["main"])
    assert "<table" in main["text/html"] and "<th>square</th>" in main["text/html"], main
    assert "square" in main["text/plain"]

    listed = (await http.get(f"{jupyter}/api/kernels")).json()
    assert {"id": kernel.id, "name": "wrenn"}.items() <= next(k for k in listed if k["id"] == kernel.id).items()


async def test_errors_come_back_with_name_value_and_traceback(kernel: Kernel) -> None:
    run = await kernel.run("y = 7\n1 / 0")
    assert run.error is not None and run.error["ename"] == "ZeroDivisionError", run
    assert run.error["evalue"] == "division by zero"
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in run.error["traceback"]]  # IPython colours it
    assert any("----> 2 1 / 0" in line for line in plain), plain
    assert (await kernel.run("y")).text == "7"  # the kernel lives on, with what ran before the error


async def test_a_long_cell_is_interrupted_and_the_kernel_keeps_its_state(kernel: Kernel, jupyter: str,
                                                                         http: httpx.AsyncClient) -> None:
    await kernel.run("kept = 'still here'")
    slow = await kernel.run("import time\nfor _ in range(600):\n    time.sleep(0.1)", within=1.0)
    assert slow.timed_out
    assert (await http.post(f"{jupyter}/api/kernels/{kernel.id}/interrupt")).status_code == 204
    await kernel.wait_idle(within=20)
    assert (await kernel.run("kept")).text == "'still here'"


async def test_two_kernels_side_by_side_keep_their_own_state(jupyter: str, http: httpx.AsyncClient) -> None:
    first, second = await asyncio.gather(Kernel.start(http, jupyter), Kernel.start(http, jupyter))
    try:
        assert first.id != second.id
        await asyncio.gather(first.run("who = 'first'"), second.run("who = 'second'"))
        answers = await asyncio.gather(first.run("who"), second.run("who"))
        assert [a.text for a in answers] == ["'first'", "'second'"]
    finally:
        for k in (first, second):
            await k.close()
            await http.delete(f"{jupyter}/api/kernels/{k.id}")


async def test_no_other_capsule_reaches_the_tokenless_jupyter(shipped: Shipped, jupyter: str) -> None:
    """Jupyter has no token inside the capsule: only the host (the platform's proxy) may reach it."""
    with shipped.client() as api:
        neighbour = create_running(api)
        try:
            r = api.post(f"/v1/capsules/{neighbour['id']}/exec", json={
                "cmd": "curl", "args": ["-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}", f"{jupyter}/api"]})
            assert r.status_code == 200, r.text
            assert r.json()["exit_code"] != 0 and r.json()["stdout"] == "000", r.json()  # no answer at all
        finally:
            api.delete(f"/v1/capsules/{neighbour['id']}")
            wait_status(api, neighbour["id"], "stopped")
