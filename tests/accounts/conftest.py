"""A real SMTP server (aiosmtpd, in this process) and an API that mails through it, with
email verification required (a hosted installation)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from aiosmtpd.controller import Controller
from httpx import ASGITransport, AsyncClient

from backend.app import create_app
from backend.core.settings import Settings
from tests.accounts.smtp import Inbox


@pytest.fixture(scope="session")
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with socket.socket() as probe:  # a free port (the controller checks it can connect)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def inbox(smtp: tuple[Inbox, int]) -> Inbox:
    return smtp[0]


@pytest.fixture(scope="session")
async def mailing_app(settings: Settings, smtp: tuple[Inbox, int]) -> AsyncIterator[object]:
    configured = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp[1],
            "smtp_starttls": False,
            "email_verification_required": True,
            "public_url": "https://baton.test",
        }
    )
    application = create_app(configured)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def hosted(mailing_app: object) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=mailing_app, client=("203.0.113.11", 40000))  # type: ignore[arg-type]
    async with AsyncClient(transport=transport, base_url="http://baton.test") as http:
        yield http
