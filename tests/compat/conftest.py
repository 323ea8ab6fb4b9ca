"""The published `wrenn` client (0.3.0, from PyPI, in its own venv under the build cache) against
`wrenn server` run as `make run` runs it (`tests/server_process.py`): one server per test module,
one account with an API key on it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from wrenn_platform.host_agent.templates import TemplateInfo

from ..server_process import ServerProcess, create_account, open_dir, pinned_cache, running_server
from .published_client import PublishedClient, ensure_client_venv


@pytest.fixture(scope="session")
def client_python() -> Path:
    return ensure_client_venv()


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, minimal_template: TemplateInfo) -> Iterator[ServerProcess]:
    root = open_dir(f"compat-{request.module.__name__.rsplit('.', 1)[-1]}-")
    try:
        with running_server(root / "data", cache_dir=pinned_cache(minimal_template, root)) as running:
            yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def client(server: ServerProcess, client_python: Path) -> PublishedClient:
    return PublishedClient(python=client_python, base_url=server.url, api_key=create_account(server).api_key)


@pytest.fixture(scope="module")
def capsule_id(client: PublishedClient) -> Iterator[str]:
    """A running capsule the module's tests share (each reaches it with `Capsule.connect`)."""
    made = client.run("""
        from wrenn import Capsule
        emit(id=Capsule(wait=True).capsule_id)
    """)
    yield made["id"]
    client.run(f"""
        from wrenn import Capsule
        Capsule.destroy({made["id"]!r})
        emit()
    """)
