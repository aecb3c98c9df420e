"""In Chromium: the account lifecycle through its mailed links, and the billing and usage
pages. The live ``baton dev`` has no SMTP host, so each mail is written to its log in full
(``mail.logged``); the test reads the link there, as a developer would on /dev/mail."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from playwright.async_api import expect

from tests.fixtures.waiting import eventually
from tests.web.browser.helpers import LiveBaton, create_tenant_via_api, log_in

NEW_PASSWORD = "a brand new passphrase 42"


def _mailed_links(live_baton: LiveBaton, to: str, path: str) -> list[str]:
    """The links to ``path`` mailed to ``to`` so far, oldest first (path and query)."""
    found = []
    for line in live_baton.log_path.read_text().splitlines():
        if "mail.logged" not in line or to not in line:
            continue
        try:
            body = str(json.loads(line).get("body", ""))
        except ValueError:
            body = line.replace("\\n", "\n")
        found += re.findall(rf"https?://[^/\s]+({re.escape(path)}\?token=[A-Za-z0-9_\-]+)", body)
    return found


async def _link(live_baton: LiveBaton, to: str, path: str, count: int = 1) -> str:
    links = await eventually(
        lambda: _mailed_links(live_baton, to, path),
        lambda got: len(got) >= count,
        what=f"a {path} link mailed to {to}",
    )
    return links[count - 1]


async def test_verify_invite_accept_and_reset_in_the_browser(
    page: Any, chromium: Any, live_baton: LiveBaton
) -> None:
    owner = create_tenant_via_api(live_baton.url)

    # The signup's verification link, opened without a session.
    await page.goto(await _link(live_baton, owner.email, "/verify-email"))
    await page.get_by_role("button", name="Verify my address").click()
    await expect(page.get_by_test_id("account-done")).to_contain_text("Email verified")

    # The owner invites a colleague, who sets a password through the mailed link.
    colleague = f"colleague-{owner.email}"
    invited = httpx.post(
        f"{live_baton.url}/api/v1/invitations",
        json={"email": colleague, "role": "editor"},
        headers=owner.headers,
        timeout=30,
    )
    assert invited.status_code == 201, invited.text
    other = await chromium.new_context(base_url=live_baton.url)
    tab = await other.new_page()
    try:
        await tab.goto(await _link(live_baton, colleague, "/accept-invitation"))
        await expect(tab.get_by_test_id("invite-role")).to_have_text("editor")
        await tab.fill("input[name=password]", NEW_PASSWORD)
        await tab.get_by_role("button", name="Join").click()
        await expect(tab.get_by_test_id("account-done")).to_be_visible()
        await log_in(tab, colleague, NEW_PASSWORD)

        # Forgot the password: the reset link ends the session and sets a new one.
        await tab.get_by_role("button", name="Log out").click()
        await tab.wait_for_url("**/login**")
        await tab.get_by_role("link", name="Forgot your password?").click()
        await tab.fill("input[name=email]", colleague)
        await tab.get_by_role("button", name="Mail me a link").click()
        await expect(tab.get_by_test_id("account-done")).to_contain_text("Check your mail")
        await tab.goto(await _link(live_baton, colleague, "/reset-password"))
        await tab.fill("input[name=password]", "another passphrase 43")
        await tab.get_by_role("button", name="Set the password").click()
        await expect(tab.get_by_test_id("account-done")).to_contain_text("Password changed")
        await log_in(tab, colleague, "another passphrase 43")
    finally:
        await other.close()


async def test_billing_and_usage_pages_in_the_browser(page: Any, live_baton: LiveBaton) -> None:
    owner = create_tenant_via_api(live_baton.url)
    await log_in(page, owner.email, owner.password)
    await page.get_by_role("link", name="Billing").click()
    await expect(page.get_by_test_id("billing-plan")).to_have_text("free")
    # On-prem (billing none): the limits come from the configuration, nothing to pay.
    await expect(page.get_by_test_id("billing-none")).to_contain_text("BATON_PLAN_LIMITS")
    await expect(page.locator("[data-limit=runs_per_month]")).to_be_visible()
    await expect(page.get_by_test_id("billing-upgrade")).to_have_count(0)
    await page.get_by_role("link", name="usage this month").click()
    await expect(page.get_by_test_id("usage-plan")).to_have_text("free")
    await expect(page.get_by_test_id("usage-bar")).to_have_count(4)
