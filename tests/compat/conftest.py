"""The published `wrenn` client (0.3.0, from PyPI, in its own venv under the build cache) against
`wrenn server` run as `make run` runs it: the shipped-server suite's `shipped` fixture (one server
per test module, an account with an API key, every capsule destroyed and no mount left at the end).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..e2e.conftest import Shipped, shipped  # noqa: F401  (the fixture, shared with tests/e2e)
from .e2b_client import E2bClient, ensure_e2b_venv
from .published_client import PublishedClient, ensure_client_venv


@pytest.fixture(scope="session")
def client_python() -> Path:
    return ensure_client_venv()


@pytest.fixture(scope="module")
def client(shipped: Shipped, client_python: Path) -> PublishedClient:  # noqa: F811
    return PublishedClient(python=client_python, base_url=shipped.url, api_key=shipped.account.api_key)


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


@pytest.fixture(scope="session")
def e2b_python() -> Path:
    return ensure_e2b_venv()


@pytest.fixture(scope="module")
def e2b(shipped: Shipped, e2b_python: Path) -> E2bClient:  # noqa: F811
    """E2B's client, configured by environment variables only, with the module's account's key."""
    return E2bClient(python=e2b_python, base_url=shipped.url, api_key=shipped.account.api_key)
