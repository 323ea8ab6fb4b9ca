"""Email through a real SMTP server on loopback (aiosmtpd): STARTTLS with a verified certificate, AUTH."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wrenn_platform.control_plane.app import create_app
from wrenn_platform.control_plane.settings import Settings

from ..conftest import make_client
from .helpers import PASSWORD, new_email, token_in


@dataclass
class Inbox:
    messages: list[EmailMessage] = field(default_factory=list)
    over_tls: list[bool] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        parsed = message_from_bytes(content, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.over_tls.append(session.ssl is not None)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wrenn-test-smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp.pem", directory / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _authenticator(server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"wrenn" and data.password == b"mail-secret"
    return AuthResult(success=ok)


@pytest.fixture
def smtp_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Inbox, int]]:
    cert, key = _certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # our client verifies the server against this CA
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
                            authenticator=_authenticator, auth_require_tls=True)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def test_signup_email_over_smtp(settings: Settings, smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    smtp_settings = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port,
                                                "smtp_username": "wrenn", "smtp_password": "mail-secret",
                                                "mail_from": "Wrenn <wrenn@example.com>"})
    app = create_app(smtp_settings)
    async with app.router.lifespan_context(app), make_client(app) as client:
        address = new_email()
        response = await client.post("/v1/auth/signup", json={"email": address, "password": PASSWORD, "name": "Ada"})
        assert response.status_code == 201, response.text
        (message,) = inbox.messages
        assert inbox.over_tls == [True]
        assert message["To"] == address and message["From"] == "Wrenn <wrenn@example.com>"
        assert not (smtp_settings.data_dir / "outbox").exists()  # SMTP configured: no outbox
        activated = await client.post("/v1/auth/activate", json={"token": token_in(message)})
        assert activated.status_code == 200

        # A reset email goes the same way (sent after the 204).
        reset = await client.post("/v1/me/password/reset", json={"email": address})
        assert reset.status_code == 204
        assert len(inbox.messages) == 2 and "reset-password?token=" in str(inbox.messages[1].get_body())


async def test_smtp_failure_answers_503_and_allows_retry(
    settings: Settings, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    right = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port,
                                        "smtp_username": "wrenn", "smtp_password": "mail-secret"})
    wrong = right.model_copy(update={"smtp_port": _free_port()})  # nothing listens there
    app = create_app(wrong)
    async with app.router.lifespan_context(app), make_client(app) as client:
        body = {"email": new_email(), "password": PASSWORD, "name": "Ada"}
        failed = await client.post("/v1/auth/signup", json=body)
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "unavailable"
        assert inbox.messages == []
        app.state.mailer.backend.settings = right  # the mail server is back
        retried = await client.post("/v1/auth/signup", json=body)  # not held by the cooldown
        assert retried.status_code == 201
        assert len(inbox.messages) == 1


