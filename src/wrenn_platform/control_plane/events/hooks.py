"""The ORM hooks the records depend on, installed by one explicit call: events and audit entries
derived from every change (`derive.py`) and the audit log's append-only guard (`audit/guard.py`).

`db.engine.make_sessionmaker` calls `install_orm_hooks()`, so every process that writes through
the ORM (server, `wrenn admin`, tests, benchmarks) records its events; the hooks are global to
SQLAlchemy's `Session` and installing them again changes nothing."""

from __future__ import annotations

from ..audit import guard
from . import derive


def install_orm_hooks() -> None:
    derive.install()
    guard.install()
