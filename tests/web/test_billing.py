"""The billing page (/settings/billing): plan and limits, upgrade through Checkout, the
portal, invoices. Stripe's servers cannot be reached here: the API with Stripe billing
(``tests/fixtures/stripe.py``) talks to the local stand-in of ``tests/billing/fake_stripe.py``
and webhooks are signed with Stripe's scheme (``tests/billing/webhooks.py``)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.app import create_app
from backend.core.settings import Settings
from tests.billing.fake_stripe import FakeStripe
from tests.billing.webhooks import PRICES, deliver, event, subscription
from tests.fixtures.factories import Account, create_member
from tests.web.helpers import (
    Browser,
    BrowserFactory,
    assert_login_redirect,
    assert_page,
    browsers_of,
)

BILLING = "/settings/billing"
CHECKOUT = "/settings/billing/checkout"
PORTAL = "/settings/billing/portal"


def _checkouts(stripe_server: FakeStripe) -> int:
    return len(stripe_server.calls("/v1/checkout/sessions"))


async def _upgrade(
    billed: AsyncClient, browser: Browser, owner: Account, stripe_server: FakeStripe
) -> str:
    """Upgrade to team from the page, then Stripe's webhooks; the Stripe customer."""
    response = await browser.post(CHECKOUT, {"plan": "team"})
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("https://checkout.stripe.test/")
    sent = stripe_server.calls("/v1/checkout/sessions")[-1]
    assert sent["client_reference_id"] == str(owner.tenant_id)
    assert sent["success_url"] == "https://baton.test/settings/billing?checkout=done"
    customer = sent["customer"]
    completed = {
        "id": f"cs_{uuid.uuid4().hex[:10]}",
        "object": "checkout.session",
        "customer": customer,
        "client_reference_id": str(owner.tenant_id),
        "subscription": f"sub_{customer[4:]}",
        "metadata": {"tenant_id": str(owner.tenant_id), "plan": "team"},
    }
    assert (await deliver(billed, event("checkout.session.completed", completed))).is_success
    created = subscription(customer, owner.tenant_id, PRICES["team"])
    assert (await deliver(billed, event("customer.subscription.created", created))).is_success
    return str(customer)


async def test_billing_page_needs_a_session(anonymous: Browser) -> None:
    assert_login_redirect(await anonymous.get(BILLING))
    assert_login_redirect(await anonymous.post(CHECKOUT, {"plan": "team"}))
    assert_login_redirect(await anonymous.post(PORTAL))


@pytest.mark.parametrize("role", ["viewer", "operator", "editor"])
async def test_billing_page_is_for_owners_and_admins(
    billed: AsyncClient,
    owner: Account,
    create_billed_browser: BrowserFactory,
    stripe_server: FakeStripe,
    role: str,
) -> None:
    member = await create_member(billed, owner, role)
    browser = await create_billed_browser(member)
    assert assert_page(await browser.get(BILLING), 403)
    before = _checkouts(stripe_server)
    assert (await browser.post(CHECKOUT, {"plan": "team"})).status_code == 403
    assert (await browser.post(PORTAL)).status_code == 403
    assert _checkouts(stripe_server) == before
    assert 'href="/settings/billing"' not in assert_page(await browser.get("/settings/usage"))


async def test_an_admin_sees_the_plan_but_may_not_pay(
    billed: AsyncClient,
    owner: Account,
    create_billed_browser: BrowserFactory,
    stripe_server: FakeStripe,
) -> None:
    admin = await create_member(billed, owner, "admin")
    browser = await create_billed_browser(admin)
    html = assert_page(await browser.get(BILLING))
    assert 'data-testid="billing-plan">free<' in html
    assert 'data-testid="billing-owner-only"' in html
    assert "/settings/billing/checkout" not in html
    before = _checkouts(stripe_server)
    refused = await browser.post(CHECKOUT, {"plan": "team"})
    assert refused.status_code == 403
    assert "Only the tenant&#39;s owners" in refused.text
    assert _checkouts(stripe_server) == before
    assert (await browser.post(PORTAL)).status_code == 403


async def test_an_owner_upgrades_through_checkout_and_manages_in_the_portal(
    billed: AsyncClient,
    owner: Account,
    create_billed_browser: BrowserFactory,
    stripe_server: FakeStripe,
) -> None:
    browser = await create_billed_browser(owner)
    html = assert_page(await browser.get(BILLING))
    assert 'data-testid="billing-plan">free<' in html
    assert 'data-plan="team"' in html and 'data-plan="business"' in html
    assert 'data-testid="billing-portal"' not in html  # not a customer yet
    assert 'data-testid="billing-no-invoices"' in html
    assert 'data-limit="runs_per_month"' in html

    customer = await _upgrade(billed, browser, owner, stripe_server)
    invoice = stripe_server.add_invoice(customer)
    html = assert_page(await browser.get(f"{BILLING}?checkout=done"))
    assert "the upgrade applies as soon as Stripe confirms" in html
    assert 'data-testid="billing-plan">team<' in html
    assert 'data-testid="billing-status">active<' in html
    assert 'data-plan="team"' not in html  # subscribed: changes go through the portal
    assert f'data-invoice="{invoice["id"]}"' in html
    assert f'href="{invoice["hosted_invoice_url"]}"' in html
    assert f'href="{invoice["invoice_pdf"]}"' in html
    assert "29.00 EUR" in html

    portal = await browser.post(PORTAL)
    assert portal.status_code == 303, portal.text
    assert portal.headers["location"].startswith("https://billing.stripe.test/")
    assert stripe_server.calls("/v1/billing_portal/sessions")[-1]["customer"] == customer


async def test_another_tenants_invoices_are_never_listed(
    billed: AsyncClient,
    owner: Account,
    stranger: Account,
    create_billed_browser: BrowserFactory,
    stripe_server: FakeStripe,
) -> None:
    theirs = await _upgrade(billed, await create_billed_browser(stranger), stranger, stripe_server)
    their_invoice = stripe_server.add_invoice(theirs)
    mine = await _upgrade(billed, await create_billed_browser(owner), owner, stripe_server)
    my_invoice = stripe_server.add_invoice(mine)
    html = assert_page(await (await create_billed_browser(owner)).get(BILLING))
    assert my_invoice["id"] in html
    assert their_invoice["id"] not in html


async def test_bad_or_unknown_plans_change_nothing(
    owner: Account, create_billed_browser: BrowserFactory, stripe_server: FakeStripe
) -> None:
    browser = await create_billed_browser(owner)
    before = _checkouts(stripe_server)
    unknown = await browser.post(CHECKOUT, {"plan": "gold"})
    assert unknown.status_code == 404
    assert "No such paid plan" in unknown.text
    for bad in ("", "Team!", "x" * 40):
        response = await browser.post(CHECKOUT, {"plan": bad})
        assert response.status_code == 422, (bad, response.text)
    assert (await browser.post(CHECKOUT, {"plan": "x" * 200})).status_code == 422
    assert _checkouts(stripe_server) == before
    # No Stripe customer yet: the portal has nothing to open.
    conflict = await browser.post(PORTAL)
    assert conflict.status_code == 409
    assert "upgrade first" in conflict.text


async def test_billing_forms_need_the_csrf_token(
    owner: Account, create_billed_browser: BrowserFactory, stripe_server: FakeStripe
) -> None:
    browser = await create_billed_browser(owner)
    before = _checkouts(stripe_server)
    forged = await browser.http.post(CHECKOUT, data={"plan": "team"})
    assert forged.status_code == 403
    assert _checkouts(stripe_server) == before


async def test_without_billing_limits_come_from_configuration(owner_browser: Browser) -> None:
    html = assert_page(await owner_browser.get(BILLING))
    assert 'data-testid="billing-none"' in html
    assert "BATON_PLAN_LIMITS" in html
    assert "/settings/billing/checkout" not in html
    assert 'data-testid="billing-invoices"' not in html
    assert (await owner_browser.post(CHECKOUT, {"plan": "team"})).status_code == 404
    assert (await owner_browser.post(PORTAL)).status_code == 404


@pytest.fixture(scope="module")
async def stripe_down_app(stripe_settings: Settings) -> AsyncIterator[object]:
    """Stripe billing, but Stripe does not answer (nothing listens at its address)."""
    with socket.socket() as probe:  # bound, never listening, for the module: refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        down = stripe_settings.model_copy(update={"stripe_api_base": f"http://127.0.0.1:{port}"})
        application = create_app(down)
        async with application.router.lifespan_context(application):
            yield application


async def test_the_page_says_when_stripe_does_not_answer(
    stripe_down_app: object, owner: Account, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO billing_accounts (tenant, customer_id, status)"
                " VALUES (:t, :c, 'active')"
            ),
            {"t": owner.tenant_id, "c": f"cus_{uuid.uuid4().hex[:14]}"},
        )
    async with browsers_of(stripe_down_app) as make:
        browser = await make(owner)
        html = assert_page(await browser.get(BILLING))
        assert "Stripe did not answer" in html
        assert 'data-testid="billing-plan">free<' in html
