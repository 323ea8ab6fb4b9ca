"""Long-lived services, started with the app in the order `app.SERVICES` lists them, stopped in
reverse. A service is an async context manager factory taking the app; it may put objects on
`app.state` for the services after it and for the routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

ServiceFactory = Callable[[FastAPI], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def start_services(app: FastAPI, services: Iterable[ServiceFactory]) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for factory in services:
            await stack.enter_async_context(factory(app))
        yield
