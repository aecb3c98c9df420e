"""CSRF protection for dashboard forms: a per-browser token, submitted back with each form.

Double-submit: the browser holds the token in an HttpOnly, SameSite=Lax cookie and each
page renders the same value into its forms (``csrf_token`` field) and into a ``<meta>`` tag
that htmx sends as the ``X-CSRF-Token`` header. A cross-site page can make the browser
send the cookie but cannot read it, so it cannot supply the matching field. Every
state-changing dashboard route depends on :data:`CsrfChecked`.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Request

from backend.core.errors import CsrfFailed
from backend.web.session import pending_cookies

CSRF_COOKIE = "baton_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
# A year: the token identifies the browser, not the login, so it outlives sessions.
CSRF_COOKIE_MAX_AGE = 365 * 24 * 3600


def csrf_token(request: Request) -> str:
    """This browser's token; a new one is issued (and set as a cookie) on first sight."""
    existing = getattr(request.state, "csrf_token", None) or request.cookies.get(CSRF_COOKIE)
    if existing and 20 <= len(existing) <= 100:
        request.state.csrf_token = existing
        return str(existing)
    token = secrets.token_urlsafe(32)
    request.state.csrf_token = token
    pending_cookies(request)[CSRF_COOKIE] = (token, CSRF_COOKIE_MAX_AGE)
    return token


async def check_csrf(request: Request) -> None:
    """Refuse a state-changing request whose form field or header lacks the cookie's token."""
    expected = request.cookies.get(CSRF_COOKIE)
    submitted = request.headers.get(CSRF_HEADER)
    if submitted is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        submitted = value if isinstance(value, str) else None
    if not expected or not submitted or not hmac.compare_digest(expected, submitted):
        raise CsrfFailed("This form has expired or did not come from Baton; reload and retry")


CsrfChecked = Annotated[None, Depends(check_csrf)]
