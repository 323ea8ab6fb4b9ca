"""`e2b_code_interpreter.Sandbox().run_code(...)` (the published client, 2.11.5) against wrenn
server: its default template `code-interpreter-v1` is a platform template serving E2B's
code-interpreter protocol on 49999 over Jupyter kernels. Text, stdout/stderr, errors, a
matplotlib PNG, state across calls, env vars per execution, two contexts, sync and async."""

from __future__ import annotations

import pytest

from .e2b_client import E2bClient

pytestmark = pytest.mark.root
PLATFORM_TEMPLATES = ("code-interpreter-v1",)  # built (or cached) before the module's server starts


def test_run_code(e2b: E2bClient) -> None:
    seen = e2b.run("""
        import base64, os
        import httpx
        from e2b_code_interpreter import Sandbox

        with Sandbox.create(timeout=300) as sbx:
            first = sbx.run_code("x = 41\\nprint('out'); import sys; print('err', file=sys.stderr)\\nx + 1")
            second = sbx.run_code("x * 2")
            failed = sbx.run_code("1 / 0")
            streamed = []
            sbx.run_code("for i in range(3): print(i)", on_stdout=lambda m: streamed.append(m.line))
            plot = sbx.run_code(
                "import matplotlib.pyplot as plt\\nplt.plot([1, 2, 3], [1, 4, 9])\\nplt.title('squares')\\nplt.show()")
            html = sbx.run_code("import pandas as pd\\npd.DataFrame({'a': [1, 2]})")
            env = sbx.run_code("import os; os.environ.get('ONLY_NOW')", envs={"ONLY_NOW": "yes"})
            env_after = sbx.run_code("import os; os.environ.get('ONLY_NOW')")
            other = sbx.create_code_context(cwd="/tmp")
            in_other = sbx.run_code("import os; os.getcwd()", context=other)
            isolated = sbx.run_code("x", context=other)
            contexts = [c.id for c in sbx.list_code_contexts()]
            sbx.run_code("y = 1", context=other)
            sbx.restart_code_context(other)
            after_restart = sbx.run_code("y", context=other)
            sbx.remove_code_context(other)
            remaining = [c.id for c in sbx.list_code_contexts()]
            url, routed = os.environ["E2B_SANDBOX_URL"] + "/execute", {"E2b-Sandbox-Id": sbx.sandbox_id,
                                                                       "E2b-Sandbox-Port": "49999"}
            refused = [httpx.post(url, json={"code": "1"}, headers={**routed, **extra}).status_code
                       for extra in ({}, {"X-Access-Token": "not-the-token"})]
            png = plot.results[0].png if plot.results else ""
            emit(text=first.text, stdout=first.logs.stdout, stderr=first.logs.stderr, count=second.execution_count,
                 second=second.text, error=(failed.error.name, failed.error.value, "ZeroDivisionError" in
                                             failed.error.traceback),
                 streamed=streamed, plot_formats=[r.formats() for r in plot.results],
                 png_magic=base64.b64decode(png)[:8].hex() if png else None,
                 html="<table" in (html.results[0].html or "") if html.results else False,
                 env=env.text, env_after=env_after.text, cwd=in_other.text, isolated=isolated.error.name,
                 other=other.id, contexts=contexts, after_restart=after_restart.error.name, remaining=remaining,
                 refused=refused)
    """, timeout=300)
    assert seen["text"] == "42" and seen["stdout"] == ["out\n"] and seen["stderr"] == ["err\n"]
    assert seen["second"] == "82" and seen["count"] == 2  # state and the execution count carry over
    assert seen["error"] == ["ZeroDivisionError", "division by zero", True]
    assert "".join(seen["streamed"]) == "0\n1\n2\n"  # as the kernel flushes it
    assert ["text", "png"] in seen["plot_formats"] and seen["png_magic"] == "89504e470d0a1a0a"
    assert seen["html"] is True
    assert seen["env"] == "'yes'" and seen["env_after"] is None  # env vars hold for one execution
    assert seen["cwd"] == "'/tmp'" and seen["isolated"] == "NameError"  # a context is a kernel of its own
    assert seen["other"] in seen["contexts"] and len(seen["contexts"]) == 2
    assert seen["after_restart"] == "NameError" and seen["other"] not in seen["remaining"]
    assert seen["refused"] == [401, 401]  # /execute needs the sandbox's envd token, checked by envd


def test_run_code_async(e2b: E2bClient) -> None:
    seen = e2b.run("""
        import asyncio
        from e2b_code_interpreter import AsyncSandbox

        async def main():
            sbx = await AsyncSandbox.create(timeout=300)
            await sbx.run_code("import numpy as np\\na = np.arange(10)")
            total = await sbx.run_code("int(a.sum())")
            context = await sbx.create_code_context()
            other = await sbx.run_code("'a' in dir()", context=context)
            await sbx.kill()
            return dict(total=total.text, other=other.text)

        emit(**asyncio.run(main()))
    """)
    assert seen == {"total": "45", "other": "False"}
