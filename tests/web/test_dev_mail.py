"""``/dev/mail``: in development the mails sent or logged are listed with their links, for
a browser on this machine only; anywhere else the page does not exist (404)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from httpx import ASGITransport, AsyncClient

from backend.app import create_app
from backend.core.settings import Environment, Settings
from backend.web.dev import linked
from tests.fixtures.factories import create_tenant
from tests.web.helpers import Browser, assert_page

MAIL = "/dev/mail"


@pytest.fixture(scope="module")
async def dev_app(settings: Settings) -> AsyncIterator[object]:
    """The API as ``baton dev`` runs it: development, no SMTP host (mails are logged)."""
    application = create_app(
        settings.model_copy(update={"environment": Environment.dev, "smtp_host": None})
    )
    async with application.router.lifespan_context(application):
        yield application


async def _browser(app: object, address: str) -> AsyncIterator[Browser]:
    transport = ASGITransport(app=app, client=(address, 41000))  # type: ignore[arg-type]
    async with AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        browser = Browser(http)
        await browser.get("/login")
        yield browser


@pytest.fixture
async def local(dev_app: object) -> AsyncIterator[Browser]:
    async for browser in _browser(dev_app, "127.0.0.1"):
        yield browser


async def test_dev_lists_sent_mail_with_links(local: Browser) -> None:
    owner = await create_tenant(local.http)  # signup mails a verification link
    asked = await local.post("/forgot-password", {"email": owner.email})
    assert asked.status_code == 200
    html = assert_page(await local.get(MAIL))
    assert "Reset your Baton password" in html
    assert "Verify your email for Baton" in html
    assert html.index("Reset your Baton password") < html.index("Verify your email for Baton")
    assert 'data-testid="mail-link"' in html
    assert 'href="http://127.0.0.1:8000/reset-password?token=' in html
    assert 'href="/dev/mail"' in html  # in the navigation
    # The link works as clicked.
    start = html.index('href="http://127.0.0.1:8000/reset-password?token=') + len('href="')
    link = html[start : html.index('"', start)]
    assert 'data-testid="reset-form"' in assert_page(await local.get(link))


def test_dev_mail_escapes_what_it_shows() -> None:
    shown = str(linked('Hi <script>x()</script>\nhttps://a.test/p?token=t"><b>&x\n'))
    assert "<script>" not in shown and "&lt;script&gt;" in shown
    assert shown.count('data-testid="mail-link"') == 1
    assert 'href="https://a.test/p?token=t"' in shown  # the link stops at the quote
    assert "<b>" not in shown


async def test_dev_mail_is_for_this_machine_only(dev_app: object) -> None:
    async for remote in _browser(dev_app, "198.51.100.9"):
        assert (await remote.get(MAIL)).status_code == 404


async def test_no_dev_mail_page_outside_development(client: AsyncClient) -> None:
    response = await client.get(MAIL, headers={"accept": "text/html"})
    assert response.status_code == 404
