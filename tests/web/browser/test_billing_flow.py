"""In Chromium, against a ``baton dev`` with Stripe billing: an owner upgrades through
Checkout, Stripe's webhooks change the plan, the billing page lists the invoices and opens
the Customer Portal. Stripe cannot be reached here: the API talks to the local stand-in
(``tests/billing/fake_stripe.py``), the webhooks are signed with Stripe's scheme, and the
browser's visits to Stripe's hosted pages are answered in their stead."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from playwright.async_api import expect

from tests.billing.fake_stripe import FakeStripe
from tests.billing.webhooks import PRICES, deliver, event, subscription
from tests.web.browser.helpers import LiveBaton, create_tenant_via_api, log_in


async def _stripe_page(route: Any) -> None:
    await route.fulfill(status=200, content_type="text/html", body="<h1>Stripe (stand-in)</h1>")


async def test_an_owner_upgrades_through_checkout_in_the_browser(
    chromium: Any, live_billed_baton: LiveBaton, stripe_server: FakeStripe
) -> None:
    url = live_billed_baton.url
    owner = create_tenant_via_api(url)
    context = await chromium.new_context(base_url=url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    await context.route("https://checkout.stripe.test/**", _stripe_page)
    await context.route("https://billing.stripe.test/**", _stripe_page)
    page = await context.new_page()
    try:
        await log_in(page, owner.email, owner.password)
        await page.get_by_role("link", name="Billing").click()
        await expect(page.get_by_test_id("billing-plan")).to_have_text("free")
        await expect(page.get_by_test_id("billing-no-invoices")).to_be_visible()
        await page.click("button[data-plan=team]")
        await page.wait_for_url("https://checkout.stripe.test/**")

        sent = stripe_server.calls("/v1/checkout/sessions")[-1]
        customer, tenant = sent["customer"], uuid.UUID(sent["client_reference_id"])
        completed = {
            "id": f"cs_{uuid.uuid4().hex[:10]}",
            "object": "checkout.session",
            "customer": customer,
            "client_reference_id": str(tenant),
            "subscription": f"sub_{customer[4:]}",
            "metadata": {"tenant_id": str(tenant), "plan": "team"},
        }
        created = subscription(customer, tenant, PRICES["team"])
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            assert (await deliver(http, event("checkout.session.completed", completed))).is_success
            assert (await deliver(http, event("customer.subscription.created", created))).is_success
        invoice = stripe_server.add_invoice(customer)

        await page.goto("/settings/billing?checkout=done")
        await expect(page.get_by_test_id("billing-plan")).to_have_text("team")
        await expect(page.get_by_test_id("billing-status")).to_have_text("active")
        row = page.locator(f"[data-invoice={invoice['id']}]")
        await expect(row.get_by_role("link", name="View")).to_have_attribute(
            "href", invoice["hosted_invoice_url"]
        )
        await expect(page.locator("[data-limit=runs_per_month] td").nth(1)).to_have_text("50000")
        await page.get_by_role("button", name="Manage cards, plan and cancellation").click()
        await page.wait_for_url("https://billing.stripe.test/**")
    finally:
        await context.close()
