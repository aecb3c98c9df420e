"""Landing, signup, login and logout pages; CSRF on their forms; safe redirects."""

from __future__ import annotations

from tests.fixtures.factories import DEFAULT_PASSWORD, Account, unique_email
from tests.web.helpers import Browser, BrowserFactory


async def test_landing_is_public_and_links_to_signup(anonymous: Browser) -> None:
    response = await anonymous.get("/")
    assert response.status_code == 200
    assert 'href="/signup"' in response.text


async def test_signup_creates_tenant_and_logs_in(anonymous: Browser) -> None:
    email = unique_email("web")
    response = await anonymous.post(
        "/signup", {"email": email, "password": DEFAULT_PASSWORD, "tenant_name": "Web Org"}
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/jobs")
    cookie = response.headers.get_list("set-cookie")
    assert any(c.startswith("baton_access=") and "HttpOnly" in c for c in cookie)
    assert any("SameSite=lax" in c for c in cookie)
    me = await anonymous.http.get("/")
    assert me.status_code == 303  # a logged-in browser skips the landing page


async def test_signup_errors_render_inline_and_change_nothing(anonymous: Browser) -> None:
    response = await anonymous.post(
        "/signup", {"email": "not-an-email", "password": "short", "tenant_name": ""}
    )
    assert response.status_code == 422
    assert "field-error" in response.text
    assert 'value="not-an-email"' in response.text  # what the user typed is kept
    short = await anonymous.post(
        "/signup", {"email": unique_email(), "password": "short", "tenant_name": "X"}
    )
    assert short.status_code == 422
    assert "at least" in short.text


async def test_signup_for_an_existing_email_with_a_wrong_password_is_refused(
    anonymous: Browser, owner: Account
) -> None:
    response = await anonymous.post(
        "/signup", {"email": owner.email, "password": "wrong password!!", "tenant_name": "Y"}
    )
    assert response.status_code == 409
    assert "already exists" in response.text


async def test_forms_without_the_csrf_token_are_refused(anonymous: Browser) -> None:
    email = unique_email("csrf")
    response = await anonymous.http.post(
        "/signup", data={"email": email, "password": DEFAULT_PASSWORD, "tenant_name": "Z"}
    )
    assert response.status_code == 403
    assert "csrf_failed" in response.text
    forged = await anonymous.http.post(
        "/signup",
        data={
            "csrf_token": "x" * 43,
            "email": email,
            "password": DEFAULT_PASSWORD,
            "tenant_name": "Z",
        },
    )
    assert forged.status_code == 403
    # Nothing was created: logging in with that account fails.
    login = await anonymous.post("/login", {"email": email, "password": DEFAULT_PASSWORD})
    assert login.status_code == 401


async def test_login_wrong_password_is_401_and_the_page_says_why(
    anonymous: Browser, owner: Account
) -> None:
    response = await anonymous.post("/login", {"email": owner.email, "password": "wrong-password"})
    assert response.status_code == 401
    assert "Invalid email, password or tenant" in response.text


async def test_login_goes_to_next_on_this_site_only(
    create_browser: BrowserFactory, owner: Account
) -> None:
    browser = await create_browser()
    ok = await browser.post(
        "/login", {"email": owner.email, "password": owner.password, "next": "/runs?status=failed"}
    )
    assert ok.headers["location"] == "/runs?status=failed"
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        other = await create_browser()  # a logged-in browser's tokens are bound to its session
        response = await other.post(
            "/login", {"email": owner.email, "password": owner.password, "next": target}
        )
        assert response.headers["location"] == "/jobs", target


async def test_pages_need_a_session_and_redirect_to_login(anonymous: Browser) -> None:
    response = await anonymous.get("/jobs?status=x")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fjobs%3Fstatus%3Dx"
    htmx = await anonymous.htmx("GET", "/jobs")
    assert htmx.headers.get("HX-Redirect", "").startswith("/login")


async def test_a_forged_session_cookie_is_no_session(create_browser: BrowserFactory) -> None:
    browser = await create_browser()
    browser.set_cookie("baton_access", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
    browser.set_cookie("baton_refresh", "brt_00000000000000000000000000000000_forged")
    response = await browser.get("/jobs")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


async def test_expired_access_cookie_is_rotated_with_the_refresh_cookie(
    owner_browser: Browser,
) -> None:
    refresh_before = owner_browser.http.cookies.get("baton_refresh")
    owner_browser.set_cookie("baton_access", "expired.or.garbage")
    response = await owner_browser.get("/settings/members")
    assert response.status_code == 200
    assert owner_browser.http.cookies.get("baton_refresh") != refresh_before


async def test_logout_ends_the_session(owner_browser: Browser) -> None:
    await owner_browser.get("/settings/members")
    access = owner_browser.http.cookies.get("baton_access")
    response = await owner_browser.post("/logout")
    assert response.status_code == 303
    assert owner_browser.http.cookies.get("baton_access") is None
    # The old access token is denied even if somebody kept a copy.
    owner_browser.set_cookie("baton_access", access or "")
    again = await owner_browser.get("/settings/members")
    assert again.status_code == 303


async def test_unknown_dashboard_path_is_an_html_404(anonymous: Browser) -> None:
    response = await anonymous.get("/no-such-page", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")


async def test_api_errors_stay_json(anonymous: Browser) -> None:
    response = await anonymous.http.get("/api/v1/jobs", headers={"Accept": "text/html"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    elsewhere = await anonymous.http.get("/no-such-page")
    assert elsewhere.json()["error"]["code"] == "not_found"


async def test_the_favicon_is_served_and_linked_from_every_page(anonymous: Browser) -> None:
    icon = await anonymous.http.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.startswith(b"<svg")
    page = await anonymous.get("/login")
    assert '<link rel="icon" href="/static/favicon.svg"' in page.text
    linked = await anonymous.http.get("/static/favicon.svg")
    assert linked.status_code == 200 and linked.content == icon.content
