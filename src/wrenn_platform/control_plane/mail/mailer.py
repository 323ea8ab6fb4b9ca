"""The `Mailer` service: SMTP when `smtp_host` is set, else `.eml` files in `DATA_DIR/outbox/`.

The outbox lets a local install work without a mail server: each message is written as a file and
its link is logged, so the operator can follow it. Available as `app.state.mailer`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import smtplib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from fastapi import FastAPI

from ..settings import Settings

log = logging.getLogger(__name__)


class MailError(Exception):
    """The message could not be handed to the mail server."""


class MailBackend(Protocol):
    async def deliver(self, message: EmailMessage) -> None: ...


class OutboxBackend:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def deliver(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._write, message)

    def _write(self, message: EmailMessage) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"{stamp}-{secrets.token_hex(4)}.eml"
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(message.as_bytes())
        temporary.rename(path)  # readers never see a half-written message
        return path


class SmtpBackend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def deliver(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        s = self.settings
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=30) as smtp:
            smtp.ehlo()
            if s.smtp_starttls and smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())  # verifies the server's certificate
                smtp.ehlo()
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password)
            smtp.send_message(message)


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.sender = settings.mail_from
        self.backend: MailBackend = (
            SmtpBackend(settings) if settings.smtp_host else OutboxBackend(settings.data_dir / "outbox")
        )

    async def send(self, to: str, subject: str, body: str, link: str | None = None) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        try:
            await self.backend.deliver(message)
        except (OSError, smtplib.SMTPException) as exc:
            log.error("email to %s failed: %s", to, exc)
            raise MailError(str(exc)) from exc
        if isinstance(self.backend, OutboxBackend):
            log.warning("email to %s written to %s; link: %s", to, self.backend.directory, link or "-")
        else:
            log.info("email to %s sent: %s", to, subject)


@asynccontextmanager
async def mailer_service(app: FastAPI) -> AsyncIterator[None]:
    app.state.mailer = Mailer(app.state.settings)
    yield
