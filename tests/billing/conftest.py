"""An API run with ``BATON_BILLING=stripe`` against the local Stripe stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from httpx import ASGITransport, AsyncClient

from backend.app import create_app
from backend.core.settings import Settings
from tests.billing.fake_stripe import FakeStripe, fake_stripe
from tests.billing.webhooks import PRICES, WEBHOOK_SECRET


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[FakeStripe]:
    with fake_stripe() as fake:
        yield fake


@pytest.fixture(scope="session")
def stripe_settings(settings: Settings, stripe_server: FakeStripe) -> Settings:
    return settings.model_copy(
        update={
            "billing": "stripe",
            "stripe_secret_key": "sk_test_baton",
            "stripe_webhook_secret": WEBHOOK_SECRET,
            "stripe_api_base": stripe_server.base,
            "stripe_prices": PRICES,
            "stripe_metered_price": "price_task_seconds",
            "billing_grace_days": 7.0,
            "public_url": "https://baton.test",
        }
    )


@pytest.fixture(scope="session")
async def stripe_app(stripe_settings: Settings) -> AsyncIterator[object]:
    application = create_app(stripe_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def billed(stripe_app: object) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=stripe_app, client=("203.0.113.10", 40000))  # type: ignore[arg-type]
    async with AsyncClient(transport=transport, base_url="http://baton.test") as http:
        yield http
