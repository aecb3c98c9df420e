"""In Chromium: sign up, log out, log in again; a form posted from another site is refused."""

from __future__ import annotations

import uuid
from typing import Any

from tests.web.browser.conftest import LiveBaton

PASSWORD = "correct horse battery staple"


def signup(page: Any, *, org: str | None = None) -> str:
    """Sign up through the form; returns the new owner's email (the browser is logged in)."""
    email = f"browser-{uuid.uuid4().hex[:8]}@example.com"
    page.goto("/signup")
    page.fill("input[name=tenant_name]", org or f"Browser Org {email[8:16]}")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/jobs**")
    return email


def test_signup_logout_and_login_again(page: Any) -> None:
    email = signup(page)
    assert page.locator("[data-testid=who]").inner_text() == email
    page.click("text=Log out")
    page.wait_for_url("**/login")
    page.goto("/jobs")
    page.wait_for_url("**/login?next=%2Fjobs")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/jobs")
    assert page.locator("[data-testid=who]").inner_text() == email


def test_signup_shows_errors_inline(page: Any) -> None:
    page.goto("/signup")
    page.fill("input[name=tenant_name]", "Short Password Org")
    page.fill("input[name=email]", f"short-{uuid.uuid4().hex[:6]}@example.com")
    page.fill("input[name=password]", "short")
    page.click("button[type=submit]")
    assert "at least" in page.locator("[role=alert]").inner_text()
    assert page.url.endswith("/signup")


def test_a_form_posted_from_another_site_is_refused(page: Any, live_baton: LiveBaton) -> None:
    """CSRF: a page elsewhere that posts to Baton with the user's cookies gets 403."""
    signup(page)
    attacker = (
        f'<form id="f" method="post" action="{live_baton.url}/logout"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    page.route(
        "http://attacker.test/",
        lambda route: route.fulfill(body=attacker, content_type="text/html"),
    )
    with page.expect_response(f"{live_baton.url}/logout") as response:
        page.goto("http://attacker.test/")
    assert response.value.status == 403
    # Still logged in: the forged logout changed nothing.
    page.goto(f"{live_baton.url}/")
    page.wait_for_url("**/jobs**")
