"""GitHub as an OAuth provider: the authorize URL, the code exchange and the verified profile.

Every URL comes from settings, so tests point them at a fake provider on loopback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from ..settings import Settings

SCOPES = "read:user user:email"


class ExchangeFailed(Exception):
    """The provider did not give us a token or a profile."""


@dataclass(frozen=True)
class Profile:
    provider_user_id: str
    login: str
    name: str
    verified_email: str | None  # primary verified address, else any verified one


class GitHub:
    name = "github"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def configured(self) -> bool:
        return bool(self.settings.github_client_id and self.settings.github_client_secret)

    def authorize_url(self, state: str, redirect_uri: str) -> str:
        query = urlencode(
            {"client_id": self.settings.github_client_id, "redirect_uri": redirect_uri, "scope": SCOPES, "state": state}
        )
        return f"{self.settings.github_authorize_url}?{query}"

    async def profile(self, code: str, redirect_uri: str) -> Profile:
        try:
            async with httpx.AsyncClient(timeout=15) as client:
                token = await self._exchange(client, code, redirect_uri)
                headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
                api = self.settings.github_api_url.rstrip("/")
                user = await self._json(client.get(f"{api}/user", headers=headers))
                emails = await self._json(client.get(f"{api}/user/emails", headers=headers))
        except httpx.HTTPError as exc:
            raise ExchangeFailed(str(exc)) from exc
        if not isinstance(user, dict) or "id" not in user:
            raise ExchangeFailed("no user id in the profile")
        login = str(user.get("login") or "")
        return Profile(
            provider_user_id=str(user["id"]),
            login=login,
            name=str(user.get("name") or login)[:100],
            verified_email=_verified_email(emails if isinstance(emails, list) else []),
        )

    async def _exchange(self, client: httpx.AsyncClient, code: str, redirect_uri: str) -> str:
        data = await self._json(
            client.post(
                self.settings.github_token_url,
                data={
                    "client_id": self.settings.github_client_id,
                    "client_secret": self.settings.github_client_secret,
                    "code": code,
                    "redirect_uri": redirect_uri,
                },
                headers={"Accept": "application/json"},
            )
        )
        token = data.get("access_token") if isinstance(data, dict) else None
        if not token:
            raise ExchangeFailed("no access token")
        return str(token)

    @staticmethod
    async def _json(pending: Any) -> Any:
        response: httpx.Response = await pending
        if response.status_code != 200:
            raise ExchangeFailed(f"{response.request.url} answered {response.status_code}")
        try:
            return response.json()
        except ValueError as exc:
            raise ExchangeFailed("not JSON") from exc


def _verified_email(emails: list[Any]) -> str | None:
    verified = [e for e in emails if isinstance(e, dict) and e.get("verified") and e.get("email")]
    verified.sort(key=lambda e: not e.get("primary"))
    return str(verified[0]["email"]).lower() if verified else None
