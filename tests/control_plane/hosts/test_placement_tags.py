"""Team placement tags (SQLite and PostgreSQL): an operator gives a team host tags with
`wrenn admin team-placement`; the scheduler then places that team's new capsules only on hosts
(joined and tagged through the API) carrying all of them, and refuses with 502 `no_host_available`
naming the tags when none does. Other teams are not affected; `--clear` lifts the rule. (A real
capsule placed by tag, and the API's 502, are in `capsules/test_distributed.py`.)"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from wrenn_platform.cli.main import app as cli
from wrenn_platform.control_plane.errors import ApiError

from ..conftest import LoggedInUser, UserFactory
from .test_fleet import _join, _pick, _place


async def _placement(app: FastAPI, *args: str) -> tuple[int, str]:
    url = app.state.settings.resolved_database_url()
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["admin", "team-placement", *args, "--database-url", url])
    return result.exit_code, result.output


async def _tag(admin: LoggedInUser, host_id: str, tag: str) -> None:
    assert (await admin.client.post(f"/v1/hosts/{host_id}/tags", json={"tag": tag})).status_code == 204


async def test_a_teams_capsules_go_only_to_hosts_with_its_tags(app: FastAPI, make_user: UserFactory,
                                                               client: httpx.AsyncClient) -> None:
    admin, user, other = await make_user(admin=True), await make_user(), await make_user()
    big, _ = await _join(admin, client, 8192)
    small, _ = await _join(admin, client, 2048)
    hosts = {big, small}
    await _tag(admin, small, "gpu")
    await _tag(admin, big, "eu")
    team = user.team_id
    assert await _placement(app, team) == (0, f"team {team}: new capsules may go to any host\n")
    assert await _pick(app, team, hosts) == big  # no tags: the most free memory

    assert await _placement(app, team, "--require", "gpu") == (
        0, f"team {team}: new capsules go only to hosts tagged gpu\n")
    assert await _pick(app, team, hosts) == small  # though `big` has more free memory
    assert await _pick(app, other.team_id, hosts) == big  # other teams are not affected
    # Every tag is required: no host has both ...
    assert (await _placement(app, team, "--require", "gpu", "--require", "eu"))[0] == 0
    with pytest.raises(ApiError) as refused:
        await _pick(app, team, hosts)
    assert (refused.value.status, refused.value.code) == (502, "no_host_available")
    assert refused.value.message.endswith("require: eu, gpu")
    # ... until one does.
    await _tag(admin, small, "eu")
    assert await _pick(app, team, hosts) == small
    # The tags narrow the choice; capacity still decides within it.
    await _place(app, team, small, 2000)
    with pytest.raises(ApiError) as full:
        await _pick(app, team, hosts)
    assert "MB of memory free" in full.value.message
    # Removing a host's tag takes it out of the team's choice at once.
    assert (await admin.client.delete(f"/v1/hosts/{small}/tags/gpu")).status_code == 204
    with pytest.raises(ApiError) as untagged:
        await _pick(app, team, hosts, 16)
    assert "tags" in untagged.value.message

    assert await _placement(app, team, "--clear") == (0, f"team {team}: new capsules may go to any host\n")
    assert await _pick(app, team, hosts) == big
    assert (await _placement(app, team, "--clear"))[0] == 0  # no change: no entry

    # The team sees each change in its audit log, made by the platform (an operator's command).
    entries = (await user.client.get("/v1/audit-logs", params={"limit": 100})).json()["entries"]
    changes = [(e["actor_type"], e["actor_name"], e["metadata"]) for e in entries if e["resource_id"] == team
               and e["resource_type"] == "team" and e["action"] == "placement.update"]
    assert list(reversed(changes)) == [
        ("system", "wrenn admin", {"tags": ["gpu"], "previous": []}),
        ("system", "wrenn admin", {"tags": ["eu", "gpu"], "previous": ["gpu"]}),
        ("system", "wrenn admin", {"tags": [], "previous": ["eu", "gpu"]}),
    ], changes
    other_entries = (await other.client.get("/v1/audit-logs", params={"limit": 100})).json()["entries"]
    assert not [e for e in other_entries if e["action"] == "placement.update"]


async def test_bad_placement_commands_are_refused(app: FastAPI, make_user: UserFactory) -> None:
    user = await make_user()
    code, output = await _placement(app, user.team_id, "--require", "no spaces")
    assert code != 0 and "--require" in output
    code, output = await _placement(app, "team-000000000000", "--require", "gpu")
    assert code != 0 and "not found" in output
    code, output = await _placement(app, "team-000000000000")
    assert code != 0 and "not found" in output
    code, output = await _placement(app, user.team_id, "--require", "gpu", "--clear")
    assert code != 0
    assert (await _placement(app, user.team_id))[1].endswith("any host\n")  # nothing was changed
