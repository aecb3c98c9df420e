"""A cookie-keeping ``Browser`` for the dashboard tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from httpx import AsyncClient, Response

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


def assert_login_redirect(response: Response) -> None:
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("/login?next=")


def assert_page(response: Response, status: int = 200) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text
