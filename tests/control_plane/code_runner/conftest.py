"""The capsule API's real server (`../capsules/conftest.py`) for this package, with `code-runner-beta` built."""

from __future__ import annotations

import pytest

from ..capsules.conftest import api, env  # noqa: F401  (env is package-scoped: its own server here)

pytestmark = pytest.mark.root
