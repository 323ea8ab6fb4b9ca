"""Run first by `__main__`: asyncio imported without `ssl`.

asyncio imports `ssl` only to support TLS, which envd never serves; without it an idle envd
skips OpenSSL's libraries and ~1.3 MiB of heap, and starts faster. `ssl` stays importable
afterwards; asyncio's modules have already bound it as `None` (their no-TLS fallback).
"""

from __future__ import annotations

import sys


def import_asyncio_without_ssl() -> None:
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # makes `import ssl` raise ImportError
    try:
        import asyncio  # noqa: F401
    finally:
        if "ssl" in sys.modules and sys.modules["ssl"] is None:
            del sys.modules["ssl"]


import_asyncio_without_ssl()
