"""A fake GitHub (authorize, token, /user, /user/emails) served by uvicorn on a loopback port."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret"


@dataclass
class GitHubUser:
    id: int
    login: str
    name: str | None
    emails: list[dict[str, Any]]


@dataclass
class FakeGitHub:
    url: str = ""
    next_user: GitHubUser | None = None  # who "authorizes" on the next visit to /login/oauth/authorize
    codes: dict[str, GitHubUser] = field(default_factory=dict)
    tokens: dict[str, GitHubUser] = field(default_factory=dict)
    redirect_uris: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/login/oauth/authorize", self.authorize),
            Route("/login/oauth/access_token", self.access_token, methods=["POST"]),
            Route("/user", self.user),
            Route("/user/emails", self.emails),
        ])

    async def authorize(self, request: Request) -> Response:
        assert request.query_params["client_id"] == CLIENT_ID
        redirect_uri = request.query_params["redirect_uri"]
        self.redirect_uris.append(redirect_uri)
        if self.next_user is None:
            query = {"error": "access_denied", "state": request.query_params["state"]}
        else:
            code = secrets.token_hex(8)
            self.codes[code] = self.next_user
            query = {"code": code, "state": request.query_params["state"]}
        return RedirectResponse(f"{redirect_uri}?{urlencode(query)}", status_code=302)

    async def access_token(self, request: Request) -> Response:
        form = await request.form()
        user = self.codes.pop(str(form.get("code")), None)
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET or user is None:
            return JSONResponse({"error": "bad_verification_code"})  # GitHub answers 200 with an error
        token = secrets.token_hex(16)
        self.tokens[token] = user
        return JSONResponse({"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"})

    def _user(self, request: Request) -> GitHubUser | None:
        return self.tokens.get(request.headers.get("authorization", "").removeprefix("Bearer "))

    async def user(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse({"id": user.id, "login": user.login, "name": user.name})

    async def emails(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse(user.emails)


@asynccontextmanager
async def serve_fake_github() -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub()
    server = uvicorn.Server(uvicorn.Config(fake.app(), host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        await task
