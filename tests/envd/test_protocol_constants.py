"""envd's version is its own constant (envd ships alone into templates and imports nothing of the
platform), released with the platform: the two must say the same."""

from __future__ import annotations

import wrenn_platform
from wrenn_platform.wire import envd as wire_envd


def test_envd_reports_the_platform_version() -> None:
    assert wrenn_platform.__version__ == wire_envd.VERSION
