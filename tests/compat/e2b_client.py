"""E2B's published clients (`e2b` 2.63.0, `e2b-code-interpreter` 2.11.5, pinned, in a venv of their
own under the build cache) pointed at `wrenn server` by environment variables alone, as docs/e2b.md
tells a user: `E2B_API_URL` and `E2B_SANDBOX_URL` the server's URL, `E2B_API_KEY` a Wrenn API key.
Scripts run as the `wrenn` client's do (`PublishedClient.run`: one JSON line of observations)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .published_client import PublishedClient, ensure_client_venv

E2B_REQUIREMENTS = ("e2b==2.63.0", "e2b-code-interpreter==2.11.5")


def ensure_e2b_venv() -> Path:
    return ensure_client_venv(requirements=E2B_REQUIREMENTS)


@dataclass(frozen=True)
class E2bClient(PublishedClient):
    def env(self) -> dict[str, str]:
        inherited = {name: value for name, value in os.environ.items()
                     if not name.startswith(("WRENN_", "E2B_"))}
        return {**inherited, "E2B_API_URL": self.base_url, "E2B_SANDBOX_URL": self.base_url,
                "E2B_API_KEY": self.api_key}
