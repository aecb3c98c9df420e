"""The session's SMTP server's port (tests/fixtures/mail.py), a signature-checking HTTP
receiver, in this process, and a hosted API (plan limits from the ``plans`` table)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from backend.app import create_app
from backend.core.settings import Settings
from tests.accounts.smtp import Inbox
from tests.notify.receiver import Receiver, receiving
from tests.secrets.helpers import secret_value


@pytest.fixture
def smtp_port(smtp: tuple[Inbox, int]) -> int:
    return smtp[1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving(secret_value()) as record:
        yield record


@pytest.fixture(scope="session")
async def hosted_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """A second API over the same database and Redis, run as a hosted installation
    (``BATON_BILLING=manual``: plan limits from the ``plans`` table, as tests/plans does)."""
    application = create_app(settings.model_copy(update={"billing": "manual"}))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def hosted(hosted_app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=hosted_app, client=("203.0.113.12", 40000))
    async with AsyncClient(transport=transport, base_url="http://baton.test") as http:
        yield http
