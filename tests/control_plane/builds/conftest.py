"""The capsule API's real server (`../capsules/conftest.py`) and the admin fixtures of
`../admin_capsules/conftest.py`, for this package."""

from __future__ import annotations

import pytest

from ..admin_capsules.conftest import admin, admin_tenant, non_admin  # noqa: F401
from ..capsules.conftest import api, env, other  # noqa: F401  (env is package-scoped: its own server here)

pytestmark = pytest.mark.root
