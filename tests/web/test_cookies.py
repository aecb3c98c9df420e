"""Session cookies: HttpOnly and SameSite always, Secure outside dev and test."""

from __future__ import annotations

from types import SimpleNamespace

from fastapi import Request, Response

from backend.auth.schemas import TokenPair
from backend.core.settings import Environment, Settings
from backend.web.session import apply_cookies, set_session_cookies

PRODUCTION = {
    "environment": Environment.production,
    "jwt_secret": "a-production-secret-of-more-than-32-bytes!!",
    "app_db_password": "not-the-dev-password",
    "secrets_kek": "cHJvZHVjdGlvbi1zZWNyZXRzLWtlay0zMi1ieXRlcyE=",
    "worker_transit_key": "cHJvZHVjdGlvbi10cmFuc2l0LWtleS0zMi1ieXRlcyE=",
}


def _cookies_for(settings: Settings) -> list[str]:
    app = SimpleNamespace(state=SimpleNamespace(settings=settings))
    request = Request({"type": "http", "app": app, "headers": [], "state": {}})
    set_session_cookies(
        request, settings, TokenPair(access_token="a.b.c", refresh_token="brt_x", expires_in=900)
    )
    response = Response()
    apply_cookies(request, response)
    return response.headers.getlist("set-cookie")


def test_production_cookies_are_secure_httponly_and_samesite() -> None:
    cookies = _cookies_for(Settings(_env_file=None, **PRODUCTION))  # type: ignore[call-arg]
    assert len(cookies) == 2
    for cookie in cookies:
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie


def test_dev_cookies_work_over_plain_http_and_the_setting_overrides() -> None:
    dev = _cookies_for(Settings(_env_file=None))  # type: ignore[call-arg]
    assert all("Secure" not in c and "HttpOnly" in c for c in dev)
    forced = _cookies_for(Settings(_env_file=None, web_cookie_secure=True))  # type: ignore[call-arg]
    assert all("Secure" in c for c in forced)
