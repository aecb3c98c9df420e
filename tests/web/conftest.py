"""Dashboard test fixtures: a cookie-keeping ``Browser`` per user, logged in through /login."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from httpx import ASGITransport, AsyncClient

from tests.fixtures.factories import Account
from tests.web.helpers import Browser, BrowserFactory


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


@asynccontextmanager
async def browsers_of(app: object) -> AsyncIterator[BrowserFactory]:
    """Logged-in (or anonymous) browsers on ``app``, closed on leaving."""
    async with AsyncExitStack() as stack:

        async def make(account: Account | None = None) -> Browser:
            transport = ASGITransport(app=app, client=("198.51.100.9", 41000))  # type: ignore[arg-type]
            http = await stack.enter_async_context(
                AsyncClient(transport=transport, base_url="http://baton.test")
            )
            browser = Browser(http)
            await browser.get("/login")
            if account is not None:
                response = await browser.post(
                    "/login",
                    {
                        "email": account.email,
                        "password": account.password,
                        "tenant": account.tenant_slug,
                    },
                )
                assert response.status_code == 303, response.text
                # Its CSRF token is bound to the session: take it from the page the login
                # redirects to, as a real browser does.
                await browser.get(response.headers["location"])
            return browser

        yield make


@pytest.fixture
async def owner_browser(create_browser: BrowserFactory, owner: Account) -> Browser:
    return await create_browser(owner)


@pytest.fixture
async def anonymous(create_browser: BrowserFactory) -> Browser:
    return await create_browser()
