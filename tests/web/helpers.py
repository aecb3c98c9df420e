"""A cookie-keeping ``Browser`` for the dashboard tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from httpx import ASGITransport, AsyncClient, Response

from tests.fixtures.factories import Account

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_in(html: str) -> str:
    """The CSRF token a page rendered into its forms."""
    match = CSRF_INPUT.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


@dataclass
class Browser:
    """One browser: its own cookie jar, and the CSRF token its pages carry."""

    http: AsyncClient
    csrf: str = ""

    async def get(self, path: str, **kwargs: Any) -> Response:
        response = await self.http.get(path, **kwargs)
        if match := CSRF_INPUT.search(response.text):
            self.csrf = match.group(1)
        return response

    async def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Response:
        """Submit a form as the page would, with this browser's CSRF token."""
        if not self.csrf:
            await self.get("/login")
        return await self.http.post(path, data={"csrf_token": self.csrf, **(data or {})}, **kwargs)

    def set_cookie(self, name: str, value: str) -> None:
        """Replace a cookie (as a tampering or expiring browser would)."""
        self.http.cookies.delete(name)
        self.http.cookies.set(name, value, domain="baton.test")

    async def htmx(self, method: str, path: str, **kwargs: Any) -> Response:
        """An htmx request: the CSRF token in its header, as base.html configures."""
        headers = {"HX-Request": "true", "X-CSRF-Token": self.csrf, **kwargs.pop("headers", {})}
        return await self.http.request(method, path, headers=headers, **kwargs)


BrowserFactory = Callable[..., Awaitable[Browser]]


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


def assert_login_redirect(response: Response) -> None:
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("/login?next=")


def assert_page(response: Response, status: int = 200) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text
