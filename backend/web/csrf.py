"""CSRF protection for dashboard forms: a token bound to the browser *and* its session.

The browser holds a random nonce in an HttpOnly, SameSite=Lax cookie. Each page renders
``HMAC(server key, nonce | who is logged in)`` into its forms (``csrf_token`` field) and
into the ``hx-headers`` htmx sends as ``X-CSRF-Token``; a form is accepted only if its
token is that HMAC for the request's own cookie and session. A cross-site page can make
the browser send the cookie but cannot read the token. Binding it to the session also
defeats cookie tossing: an attacker on a sibling host who plants their own cookie and
knows the matching token from their own session still cannot produce the token for the
victim's session, and a token made without the server key is worthless. Before login the
token is bound to no user, so there a planted cookie would work: in production the cookies
are ``__Host-`` prefixed (``session.cookie_name``), which a sibling host cannot set. The key is
derived from the JWT signing secret. Every state-changing dashboard route depends on
:data:`CsrfChecked`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Request

from backend.core.errors import CsrfFailed
from backend.core.principal import Principal
from backend.core.settings import Settings
from backend.web.session import MaybeWebPrincipal, pending_cookies, read_cookie

CSRF_COOKIE = "baton_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
# A year: the nonce identifies the browser; the token also names the session's user.
CSRF_COOKIE_MAX_AGE = 365 * 24 * 3600
_ANONYMOUS = "anonymous"


def _nonce(request: Request) -> str:
    """This browser's nonce; a new one is issued (and set as a cookie) on first sight."""
    existing = getattr(request.state, "csrf_nonce", None) or read_cookie(request, CSRF_COOKIE)
    if existing and 20 <= len(existing) <= 100:
        request.state.csrf_nonce = existing
        return str(existing)
    nonce = secrets.token_urlsafe(32)
    request.state.csrf_nonce = nonce
    pending_cookies(request)[CSRF_COOKIE] = (nonce, CSRF_COOKIE_MAX_AGE)
    return nonce


def _binding(principal: Principal | None) -> str:
    # The user, not the access token or tenant: tokens rotate every few minutes and a page
    # rendered before a rotation must still submit.
    return _ANONYMOUS if principal is None else f"user:{principal.user_id}"


def sign(settings: Settings, nonce: str, principal: Principal | None) -> str:
    """The token a page renders for ``nonce`` (the cookie) and the logged-in ``principal``."""
    key = hashlib.sha256(b"baton-csrf\x00" + settings.jwt_secret.encode()).digest()
    message = f"{nonce}|{_binding(principal)}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_token(request: Request) -> str:
    """The token for this page's forms (the session is the one this request resolved)."""
    settings: Settings = request.app.state.settings
    principal: Principal | None = getattr(request.state, "web_principal", None)
    return sign(settings, _nonce(request), principal)


async def check_csrf(request: Request, principal: MaybeWebPrincipal) -> None:
    """Refuse a state-changing request whose form field or header is not the token for the
    request's own CSRF cookie and session."""
    nonce = read_cookie(request, CSRF_COOKIE)
    submitted = request.headers.get(CSRF_HEADER)
    if submitted is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        submitted = value if isinstance(value, str) else None
    settings: Settings = request.app.state.settings
    expected = sign(settings, nonce, principal) if nonce else None
    if not expected or not submitted or not hmac.compare_digest(expected, submitted):
        error = CsrfFailed("This form has expired or did not come from Baton; reload and retry")
        # A reused refresh cookie revoked its family while the session was resolved: that
        # must be kept although the request is refused here.
        error.commit_side_effects = getattr(request.state, "web_session_side_effects", False)
        raise error


CsrfChecked = Annotated[None, Depends(check_csrf)]
