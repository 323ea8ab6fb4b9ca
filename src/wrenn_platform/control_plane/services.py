"""Long-lived services started with the app, in registration order, stopped in reverse.

A service is an async context manager factory taking the app; it may put objects on
`app.state`. Modules register theirs with `@service` at import time (imported by `app.py` via the
route modules or explicitly below).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

ServiceFactory = Callable[[FastAPI], AbstractAsyncContextManager[None]]
_registry: list[tuple[int, str, ServiceFactory]] = []


def service(order: int) -> Callable[[ServiceFactory], ServiceFactory]:
    """Register a service; lower `order` starts first (bus 10, mail 20, agents 50, workers 80)."""

    def register(factory: ServiceFactory) -> ServiceFactory:
        name = f"{factory.__module__}.{factory.__qualname__}"
        if all(existing != name for _, existing, _ in _registry):
            _registry.append((order, name, factory))
        return factory

    return register


@asynccontextmanager
async def start_services(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for _, _, factory in sorted(_registry, key=lambda entry: (entry[0], entry[1])):
            await stack.enter_async_context(factory(app))
        yield
