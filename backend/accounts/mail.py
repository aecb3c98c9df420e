"""Outgoing email: SMTP (``BATON_SMTP_*``), sent after the transaction commits.

Without ``BATON_SMTP_HOST`` (``baton dev``, tests that do not run a mail server) a mail is
not sent but logged in full (``mail.logged``), links included: development needs no mail
server to follow a verification or invitation link. In development (``BATON_ENVIRONMENT``
dev) every mail is also kept in this process's ``DEV_OUTBOX`` (the newest 100), which the
dashboard's dev-only page ``/dev/mail`` lists with its links.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.db import after_commit
from backend.core.models import utcnow
from backend.core.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str


@dataclass(frozen=True)
class OutboxMail:
    """A mail as development keeps it for ``/dev/mail``."""

    mail: Mail
    at: datetime = field(default_factory=utcnow)
    sent: bool = False  # False: only logged (no SMTP host)


# Development only: the mails of this process, newest last (``baton dev`` runs the API
# in one process). Never filled outside BATON_ENVIRONMENT=dev.
DEV_OUTBOX: deque[OutboxMail] = deque(maxlen=100)


def _send(settings: Settings, mail: Mail) -> None:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message.set_content(mail.body)
    assert settings.smtp_host is not None
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password)
        smtp.send_message(message)


async def deliver(settings: Settings, mail: Mail) -> None:
    """Send ``mail`` now (a thread: smtplib blocks); a failure is logged, not raised - the
    change that asked for it is committed, and the user can ask for the link again."""
    if not settings.smtp_host:
        log.info("mail.logged", to=mail.to, subject=mail.subject, body=mail.body)
        if settings.is_dev:
            DEV_OUTBOX.append(OutboxMail(mail))
        return
    try:
        await asyncio.to_thread(_send, settings, mail)
        log.info("mail.sent", to=mail.to, subject=mail.subject)
        if settings.is_dev:
            DEV_OUTBOX.append(OutboxMail(mail, sent=True))
    except (OSError, smtplib.SMTPException) as error:
        log.warning("mail.failed", to=mail.to, subject=mail.subject, error=type(error).__name__)


def send_after_commit(session: AsyncSession, settings: Settings, mail: Mail) -> None:
    """Send ``mail`` once the current transaction has committed (never for a rollback)."""

    async def send() -> None:
        await deliver(settings, mail)

    after_commit(session, send)
