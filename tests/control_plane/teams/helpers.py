"""Small steps the team tests share: a team with members in given roles, error assertions."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from ..conftest import LoggedInUser, SessionFactory, UserFactory


@dataclass
class Member:
    user: LoggedInUser
    client: httpx.AsyncClient  # a session scoped to the shared team


async def add_member(
    owner: LoggedInUser, make_user: UserFactory, session_for: SessionFactory, role: str = "member"
) -> Member:
    """A new user added to `owner`'s team (through the API), promoted to `role`, with a session there."""
    user = await make_user()
    response = await owner.client.post(f"/v1/teams/{owner.team_id}/members", json={"email": user.email})
    assert response.status_code == 201, response.text
    if role != "member":
        response = await owner.client.patch(f"/v1/teams/{owner.team_id}/members/{user.id}", json={"role": role})
        assert response.status_code == 204, response.text
    return Member(user=user, client=await session_for(user.id, owner.team_id))


def assert_error(response: httpx.Response, status: int, code: str | None = None, mentions: str = "") -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"code", "message"}
    if code is not None:
        assert error["code"] == code, error
    assert mentions in error["message"], error

