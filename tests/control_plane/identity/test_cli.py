"""`wrenn admin create` and `wrenn server` (a real process on a random port), on both databases."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import select
from typer.testing import CliRunner

from wrenn_platform.cli.main import app as cli
from wrenn_platform.control_plane.db.engine import make_engine, make_sessionmaker
from wrenn_platform.control_plane.db.models import TeamMember, User
from wrenn_platform.control_plane.settings import Settings

from .helpers import messages_to, new_email, token_in

WRENN = str(Path(sys.executable).with_name("wrenn"))


async def _invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)
    return result.exit_code, result.output


async def test_admin_create(database_url: str, tmp_path: Path) -> None:
    code, output = await _invoke("admin", "create", "--email", "Root@Example.com", "--password", "admin-password",
                                 "--name", "Root", "--data-dir", str(tmp_path), "--database-url", database_url)
    assert code == 0, output
    assert "created platform admin root@example.com" in output
    # Containers: the same from environment variables, and running it again is harmless.
    env = {"WRENN_ADMIN_EMAIL": "root@example.com", "WRENN_ADMIN_PASSWORD": "another-password",
           "WRENN_DATABASE_URL": database_url, "WRENN_DATA_DIR": str(tmp_path)}
    code, output = await _invoke("admin", "create", env=env)
    assert code == 0 and "already exists" in output

    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            user = (await db.execute(select(User).where(User.email == "root@example.com"))).scalar_one()
            assert user.is_admin and user.is_active and user.name == "Root"
            role = (await db.execute(select(TeamMember.role).where(TeamMember.user_id == user.id))).scalar_one()
            assert role == "owner" and user.default_team_id is not None
    finally:
        await engine.dispose()

    code, output = await _invoke("admin", "create", "--email", "x@example.com", "--password", "short",
                                 "--database-url", database_url)
    assert code == 2 and "--password" in output
    code, output = await _invoke("admin", "create", "--email", "not-an-email", "--password", "long-enough",
                                 "--database-url", database_url)
    assert code == 2 and "--email" in output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_wrenn_server_end_to_end(database_url: str, tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", _free_port()
    env = {**os.environ, "WRENN_EMBEDDED_AGENT": "false", "WRENN_DATABASE_URL": database_url}
    code, output = await _invoke("admin", "create", "--email", "admin@example.com", "--password", "admin-password",
                                 "--data-dir", str(data_dir), env={"WRENN_DATABASE_URL": database_url})
    assert code == 0, output
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            WRENN, "server", "--data-dir", str(data_dir), "--port", str(port), "--insecure-cookies",
            env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for _ in range(300):
                assert process.returncode is None, log_path.read_text()
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("wrenn server did not become healthy")

            address = new_email()
            credentials = {"email": address, "password": "pw-12345678", "name": "E"}
            signup = await client.post("/v1/auth/signup", json=credentials)
            assert signup.status_code == 201, signup.text
            (message,) = messages_to(Settings(data_dir=data_dir), address)
            body = str(message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
            assert f"{base}/activate?token=" in body  # public_url defaults to where the server listens
            page = await client.get(f"/activate?token={token_in(message)}")
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            activated = await client.post("/v1/auth/activate", json={"token": token_in(message)})
            assert activated.status_code == 200
            assert "Secure" not in activated.headers["set-cookie"]
            me = await client.get("/v1/me")
            assert me.status_code == 200 and me.json()["email"] == address

        async with httpx.AsyncClient(base_url=base, timeout=10) as admin:
            admin_login = {"email": "admin@example.com", "password": "admin-password"}
            login = await admin.post("/v1/auth/login", json=admin_login)
            assert login.status_code == 200 and login.json()["is_admin"] is True
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            raise
    log = log_path.read_text()
    assert process.returncode == 0, log
    assert "email to " in log and "/activate?token=" in log  # the outbox logs the link
