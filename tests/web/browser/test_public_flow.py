"""In Chromium: sign up, log out, log in again; a form posted from another site is refused."""

from __future__ import annotations

import uuid
from typing import Any

from tests.web.browser.helpers import PASSWORD, LiveBaton, signup


async def test_signup_logout_and_login_again(page: Any) -> None:
    email = await signup(page)
    assert await page.locator("[data-testid=who]").inner_text() == email
    await page.click("text=Log out")
    await page.wait_for_url("**/login")
    await page.goto("/jobs")
    await page.wait_for_url("**/login?next=%2Fjobs")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/jobs")
    assert await page.locator("[data-testid=who]").inner_text() == email


async def test_signup_shows_errors_inline(page: Any) -> None:
    await page.goto("/signup")
    await page.fill("input[name=tenant_name]", "Short Password Org")
    await page.fill("input[name=email]", f"short-{uuid.uuid4().hex[:6]}@example.com")
    await page.fill("input[name=password]", "short")
    await page.click("button[type=submit]")
    assert "at least" in await page.locator("[role=alert]").inner_text()
    assert page.url.endswith("/signup")


async def test_a_form_posted_from_another_site_is_refused(page: Any, live_baton: LiveBaton) -> None:
    """CSRF: a page elsewhere that posts to Baton with the user's cookies gets 403."""
    await signup(page)
    attacker = (
        f'<form id="f" method="post" action="{live_baton.url}/logout"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    await page.route(
        "http://attacker.test/",
        lambda route: route.fulfill(body=attacker, content_type="text/html"),
    )
    async with page.expect_response(f"{live_baton.url}/logout") as response:
        await page.goto("http://attacker.test/")
    assert (await response.value).status == 403
    # Still logged in: the forged logout changed nothing.
    await page.goto(f"{live_baton.url}/")
    await page.wait_for_url("**/jobs**")
