"""The published `wrenn` client (0.3.0, from PyPI, in its own venv under the build cache) against
`wrenn server` run as `make run` runs it: one server per test module, one API key on it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from wrenn_platform.host_agent.templates import TemplateInfo

from .published_client import PublishedClient, ensure_client_venv
from .shipped_server import ShippedServer, shipped_server

# Capsule processes run as unprivileged uids that must traverse to their files: not pytest's 0700 tmp.
TEST_ROOT = Path("/tmp/wrenn-compat-tests")


@pytest.fixture(scope="session")
def client_python() -> Path:
    return ensure_client_venv()


@pytest.fixture(scope="module")
def server(minimal_template: TemplateInfo) -> Iterator[ShippedServer]:
    TEST_ROOT.mkdir(mode=0o755, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="server-", dir=TEST_ROOT))
    root.chmod(0o755)
    try:
        with shipped_server(root) as running:
            yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def client(server: ShippedServer, client_python: Path) -> PublishedClient:
    return PublishedClient(python=client_python, base_url=server.url, api_key=server.create_api_key())
