"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

from wrenn_platform.host_agent.images import build_template
from wrenn_platform.host_agent.templates import TemplateInfo


@pytest.fixture(scope="session")
def minimal_template() -> TemplateInfo:
    """The platform template `minimal` (`.path`, `.rootfs`), built by the project's builder.

    Cached under /var/cache/wrenn (or $WRENN_CACHE_DIR): instant when nothing changed, ~0.5 s
    after an envd change, ~45 s from scratch. A failed build errors the test; nothing is skipped.
    """
    return build_template("minimal").info

