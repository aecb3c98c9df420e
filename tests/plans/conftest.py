"""A second API over the same database and Redis, run as a hosted installation
(``BATON_BILLING=manual``: limits from the ``plans`` table); the suite's own app runs as
on-prem (``none``: limits from configuration)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from httpx import AsyncClient

from backend.core.settings import Settings
from tests.fixtures.stack import client_for, started_app


@pytest.fixture(scope="session")
async def hosted_app(settings: Settings) -> AsyncIterator[object]:
    async with started_app(settings.model_copy(update={"billing": "manual"})) as application:
        yield application


@pytest.fixture
async def billed(hosted_app: object) -> AsyncIterator[AsyncClient]:
    """A client of the hosted installation, whose limits come from the plans table (not the
    mailing app's client ``hosted`` of tests/fixtures/mail.py)."""
    async with client_for(hosted_app, "203.0.113.8") as http:
        yield http
