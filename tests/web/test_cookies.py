"""Session cookies: HttpOnly and SameSite always, Secure and ``__Host-`` prefixed outside dev
and test."""

from __future__ import annotations

from types import SimpleNamespace

from fastapi import Request, Response
from httpx import ASGITransport, AsyncClient

from backend.app import create_app
from backend.auth.schemas import TokenPair
from backend.core.settings import Environment, Settings
from backend.web.csrf import CSRF_COOKIE
from backend.web.session import ACCESS_COOKIE, apply_cookies, set_session_cookies
from tests.fixtures.factories import Account
from tests.web.helpers import csrf_in

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


def test_secure_cookies_are_host_prefixed_so_no_sibling_host_can_plant_them() -> None:
    cookies = _cookies_for(Settings(_env_file=None, **PRODUCTION))  # type: ignore[call-arg]
    names = sorted(cookie.split("=", 1)[0] for cookie in cookies)
    assert names == ["__Host-baton_access", "__Host-baton_refresh"]
    # What a browser requires of a __Host- cookie: Secure, Path=/, no Domain.
    for cookie in cookies:
        assert "Secure" in cookie and "Path=/" in cookie and "Domain" not in cookie
    dev = _cookies_for(Settings(_env_file=None))  # type: ignore[call-arg]
    assert sorted(c.split("=", 1)[0] for c in dev) == ["baton_access", "baton_refresh"]


async def test_a_planted_csrf_pair_does_not_pass_the_login_form(
    settings: Settings, owner: Account
) -> None:
    """Login CSRF: before login the token is bound to no user, so an attacker's own valid
    anonymous pair would pass if they could plant its cookie. A sibling host can plant
    only the bare name; the app reads the ``__Host-`` one."""
    app = create_app(settings.model_copy(update={"web_cookie_secure": True}))
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, client=("203.0.113.9", 40000))
        async with (
            AsyncClient(transport=transport, base_url="https://baton.test") as attacker,
            AsyncClient(transport=transport, base_url="https://baton.test") as victim,
        ):
            page = await attacker.get("/login")
            token = csrf_in(page.text)
            planted = attacker.cookies[f"__Host-{CSRF_COOKIE}"]
            assert page.headers["set-cookie"].startswith(f"__Host-{CSRF_COOKIE}=")
            # What the sibling host can set: the bare name, for the parent domain.
            victim.cookies.set(CSRF_COOKIE, planted, domain="baton.test")
            login = {"email": owner.email, "password": owner.password, "csrf_token": token}
            refused = await victim.post("/login", data=login)
            assert refused.status_code == 403 and "csrf_failed" in refused.text
            assert not [c for c in victim.cookies.jar if "access" in c.name]

            # The victim's own page and cookie work.
            own = csrf_in((await victim.get("/login")).text)
            accepted = await victim.post("/login", data={**login, "csrf_token": own})
            assert accepted.status_code == 303, accepted.text
            assert f"__Host-{ACCESS_COOKIE}" in victim.cookies
