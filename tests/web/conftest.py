"""Dashboard test fixtures: a cookie-keeping ``Browser`` per user, logged in through /login."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fixtures.factories import Account
from tests.web.helpers import Browser, BrowserFactory, browsers_of


@pytest.fixture
async def create_browser(app: object) -> AsyncIterator[BrowserFactory]:
    """``await create_browser(account)``: a browser logged in as ``account`` (None: anonymous)."""
    async with browsers_of(app) as make:
        yield make


@pytest.fixture
async def create_billed_browser(stripe_app: object) -> AsyncIterator[BrowserFactory]:
    """The same, on an API with Stripe billing (``tests/fixtures/stripe.py``)."""
    async with browsers_of(stripe_app) as make:
        yield make


@pytest.fixture
async def create_hosted_browser(mailing_app: object) -> AsyncIterator[BrowserFactory]:
    """The same, on an API that mails through the tests' SMTP server and requires verified
    addresses (``tests/fixtures/mail.py``)."""
    async with browsers_of(mailing_app) as make:
        yield make


@pytest.fixture
async def owner_browser(create_browser: BrowserFactory, owner: Account) -> Browser:
    return await create_browser(owner)


@pytest.fixture
async def anonymous(create_browser: BrowserFactory) -> Browser:
    return await create_browser()
