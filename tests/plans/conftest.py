"""A second API over the same database and Redis, run as a hosted installation
(``BATON_BILLING=manual``: limits from the ``plans`` table); the suite's own app runs as
on-prem (``none``: limits from configuration)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from httpx import ASGITransport, AsyncClient

from backend.app import create_app
from backend.core.settings import Settings


@pytest.fixture(scope="session")
async def hosted_app(settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings.model_copy(update={"billing": "manual"}))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def hosted(hosted_app: object) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=hosted_app, client=("203.0.113.8", 40000))  # type: ignore[arg-type]
    async with AsyncClient(transport=transport, base_url="http://baton.test") as http:
        yield http
