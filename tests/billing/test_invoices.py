"""GET /api/v1/billing/invoices: the tenant's Stripe invoices, read from the local Stripe
stand-in (``tests/billing/fake_stripe.py``; Stripe's servers cannot be reached here)."""

from __future__ import annotations

import uuid

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.billing.fake_stripe import FakeStripe
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_member

INVOICES = "/api/v1/billing/invoices"


async def _customer(owner_engine: AsyncEngine, account: Account) -> str:
    customer = f"cus_{uuid.uuid4().hex[:14]}"
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO billing_accounts (tenant, customer_id, status)"
                " VALUES (:t, :c, 'active')"
            ),
            {"t": account.tenant_id, "c": customer},
        )
    return customer


async def test_invoices_anonymous(billed: AsyncClient) -> None:
    assert_error(await billed.get(INVOICES), 401, "unauthenticated")


@pytest.mark.parametrize("role", ["viewer", "editor"])
async def test_invoices_need_an_admin(billed: AsyncClient, owner: Account, role: str) -> None:
    member = await create_member(billed, owner, role)
    assert_error(await billed.get(INVOICES, headers=member.headers), 403, "forbidden")


async def test_invoices_listed_per_tenant(
    billed: AsyncClient,
    owner: Account,
    stranger: Account,
    owner_engine: AsyncEngine,
    stripe_server: FakeStripe,
) -> None:
    none_yet = await billed.get(INVOICES, headers=owner.headers)
    assert none_yet.status_code == 200 and none_yet.json() == []  # not a customer yet
    mine = stripe_server.add_invoice(await _customer(owner_engine, owner))
    stripe_server.add_invoice(await _customer(owner_engine, stranger))
    admin = await create_member(billed, owner, "admin")
    listed = await billed.get(INVOICES, headers=admin.headers)
    assert listed.status_code == 200, listed.text
    [invoice] = listed.json()
    assert invoice["id"] == mine["id"]
    assert invoice["hosted_invoice_url"] == mine["hosted_invoice_url"]
    assert invoice["amount_due"] == 2900 and invoice["currency"] == "eur"


async def test_invoices_without_stripe_billing(client: AsyncClient, owner: Account) -> None:
    listed = await client.get(INVOICES, headers=owner.headers)
    assert listed.status_code == 200 and listed.json() == []
