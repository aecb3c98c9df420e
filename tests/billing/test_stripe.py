"""Stripe billing end to end: Checkout and Portal against a local stand-in for
api.stripe.com (Stripe's servers cannot be reached here; the real ``stripe`` library talks
to it over HTTP), and webhooks signed with Stripe's real scheme."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import stripe
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.billing.stripe_billing import enforce_grace
from backend.core.db import commit
from backend.core.models import utcnow
from backend.core.settings import Settings
from tests.billing.fake_stripe import FakeStripe
from tests.billing.webhooks import (
    PRICES,
    WEBHOOK,
    checkout_session,
    deliver,
    event,
    invoice,
    subscription,
)
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_member
from tests.fixtures.schedules import ScheduledJob, fire, next_instant

CHECKOUT = "/api/v1/billing/checkout"
PORTAL = "/api/v1/billing/portal"
BILLING = "/api/v1/billing"


async def _checkout(billed: AsyncClient, owner: Account, stripe_server: FakeStripe) -> str:
    """Start Checkout for the team plan; the Stripe customer it made."""
    response = await billed.post(CHECKOUT, json={"plan": "team"}, headers=owner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["url"].startswith("https://checkout.stripe.test/")
    sent = stripe_server.calls("/v1/checkout/sessions")[-1]
    assert sent["client_reference_id"] == str(owner.tenant_id)
    return sent["customer"]


async def _upgrade(billed: AsyncClient, owner: Account, stripe_server: FakeStripe) -> str:
    """Checkout, then the webhooks Stripe sends once the customer paid; the customer."""
    customer = await _checkout(billed, owner, stripe_server)
    completed = checkout_session(customer, owner.tenant_id)
    assert (
        await deliver(billed, event("checkout.session.completed", completed))
    ).status_code == 200
    created = event(
        "customer.subscription.created", subscription(customer, owner.tenant_id, PRICES["team"])
    )
    assert (await deliver(billed, created)).status_code == 200
    return customer


async def _state(billed: AsyncClient, owner: Account) -> dict[str, Any]:
    response = await billed.get(BILLING, headers=owner.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _limit(billed: AsyncClient, owner: Account, name: str) -> int | None:
    report = (await billed.get("/api/v1/usage", headers=owner.headers)).json()
    return next(item["allowed"] for item in report["limits"] if item["name"] == name)


async def _tenant(owner_engine: AsyncEngine, account: Account) -> tuple[str, str]:
    async with owner_engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT plan, status FROM tenants WHERE id = :t"), {"t": account.tenant_id}
            )
        ).one()
    return row.plan, row.status


async def _actions(owner_engine: AsyncEngine, account: Account) -> list[str]:
    async with owner_engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    text(
                        "SELECT action FROM audit_events WHERE tenant_id = :t"
                        " AND (action LIKE 'billing.%' OR action LIKE 'tenant.%') ORDER BY seq"
                    ),
                    {"t": account.tenant_id},
                )
            ).scalars()
        )


# ------------------------------------------------------------------------------ checkout


async def test_checkout_anonymous(billed: AsyncClient) -> None:
    assert_error(await billed.post(CHECKOUT, json={"plan": "team"}), 401, "unauthenticated")


@pytest.mark.parametrize("role", ["admin", "viewer"])
async def test_checkout_needs_an_owner(billed: AsyncClient, owner: Account, role: str) -> None:
    member = await create_member(billed, owner, role)
    response = await billed.post(CHECKOUT, json={"plan": "team"}, headers=member.headers)
    assert_error(response, 403, "forbidden")
    assert_error(await billed.post(PORTAL, headers=member.headers), 403, "forbidden")


async def test_checkout_unknown_or_unpriced_plan(billed: AsyncClient, owner: Account) -> None:
    for plan in ("enterprise", "free", "no-such-plan"):
        response = await billed.post(CHECKOUT, json={"plan": plan}, headers=owner.headers)
        assert_error(response, 404, "not_found")
    bad = await billed.post(CHECKOUT, json={"plan": "Team!"}, headers=owner.headers)
    assert_error(bad, 422, "validation_failed")


async def test_without_stripe_billing_the_endpoints_are_not_found(
    client: AsyncClient, owner: Account
) -> None:
    """The suite's own app runs with billing "none" (on-prem)."""
    response = await client.post(CHECKOUT, json={"plan": "team"}, headers=owner.headers)
    assert_error(response, 404, "not_found")
    assert_error(await client.post(WEBHOOK, content=b"{}"), 404, "not_found")


async def test_checkout_creates_a_customer_once_and_a_subscription_session(
    billed: AsyncClient, owner: Account, stripe_server: FakeStripe
) -> None:
    first = await _checkout(billed, owner, stripe_server)
    second = await _checkout(billed, owner, stripe_server)
    assert first == second  # one Stripe customer per tenant
    sent = stripe_server.calls("/v1/checkout/sessions")[-1]
    assert sent["mode"] == "subscription"
    assert sent["line_items[0][price]"] == PRICES["team"]
    assert sent["line_items[1][price]"] == "price_task_seconds"
    assert sent["subscription_data[metadata][tenant_id]"] == str(owner.tenant_id)
    assert sent["success_url"].startswith("https://baton.test/settings/billing")
    request = stripe_server.requests[-1]
    assert request["authorization"] == "Bearer sk_test_baton"


async def test_portal_before_and_after_being_a_customer(
    billed: AsyncClient, owner: Account, stripe_server: FakeStripe
) -> None:
    assert_error(await billed.post(PORTAL, headers=owner.headers), 409, "conflict")
    customer = await _checkout(billed, owner, stripe_server)
    response = await billed.post(PORTAL, headers=owner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["url"].startswith("https://billing.stripe.test/")
    assert stripe_server.calls("/v1/billing_portal/sessions")[-1]["customer"] == customer


# ------------------------------------------------------------------------------ webhooks


async def test_upgrade_end_to_end(
    billed: AsyncClient, owner: Account, stripe_server: FakeStripe, owner_engine: AsyncEngine
) -> None:
    assert await _limit(billed, owner, "runs_per_month") == 1_000  # free
    await _upgrade(billed, owner, stripe_server)
    assert await _tenant(owner_engine, owner) == ("team", "active")
    assert await _limit(billed, owner, "runs_per_month") == 50_000
    state = await _state(billed, owner)
    assert (state["plan"], state["status"], state["has_customer"]) == ("team", "active", True)
    assert "billing.plan_changed" in await _actions(owner_engine, owner)
    # Upgraded: a second Checkout is refused (the portal changes an existing subscription).
    again = await billed.post(CHECKOUT, json={"plan": "business"}, headers=owner.headers)
    assert_error(again, 409, "conflict")


async def test_a_forged_signature_is_refused(
    billed: AsyncClient, owner: Account, stripe_server: FakeStripe, owner_engine: AsyncEngine
) -> None:
    customer = await _checkout(billed, owner, stripe_server)
    forged = event(
        "customer.subscription.created", subscription(customer, owner.tenant_id, PRICES["team"])
    )
    assert_error(await deliver(billed, forged, secret="whsec_someone_else"), 400, "bad_request")
    unsigned = await billed.post(WEBHOOK, content=json.dumps(forged))
    assert_error(unsigned, 400, "bad_request")
    # The signature covers the payload: a body changed after signing is refused.
    payload = json.dumps(forged)
    header = stripe.WebhookSignature.generate_signature_header(payload, "whsec_test_baton")
    tampered = payload.replace(PRICES["team"], PRICES["business"])
    answer = await billed.post(WEBHOOK, content=tampered, headers={"Stripe-Signature": header})
    assert_error(answer, 400, "bad_request")
    assert await _tenant(owner_engine, owner) == ("free", "active")


async def test_a_replayed_event_changes_nothing(
    billed: AsyncClient, owner: Account, stripe_server: FakeStripe, owner_engine: AsyncEngine
) -> None:
    customer = await _upgrade(billed, owner, stripe_server)
    failed = event("invoice.payment_failed", invoice(customer))
    first = await deliver(billed, failed)
    assert first.json() == {"received": True, "duplicate": False}
    audited = await _actions(owner_engine, owner)
    replay = await deliver(billed, failed)
    assert replay.status_code == 200
    assert replay.json() == {"received": True, "duplicate": True}
    assert await _actions(owner_engine, owner) == audited


async def test_an_older_event_arriving_late_is_ignored(
    billed: AsyncClient, owner: Account, stripe_server: FakeStripe, owner_engine: AsyncEngine
) -> None:
    customer = await _upgrade(billed, owner, stripe_server)
    newer = event(
        "customer.subscription.updated",
        subscription(customer, owner.tenant_id, PRICES["business"], plan="business"),
        created=2_000_000_000,
    )
    older = event(
        "customer.subscription.updated",
        subscription(customer, owner.tenant_id, PRICES["team"]),
        created=1_999_999_000,
    )
    assert (await deliver(billed, newer)).status_code == 200
    assert (await deliver(billed, older)).json()["duplicate"] is False
    assert await _tenant(owner_engine, owner) == ("business", "active")


async def test_payment_failure_grace_suspension_and_resume(
    stripe_app: FastAPI,
    stripe_settings: Settings,
    billed: AsyncClient,
    owner: Account,
    stripe_server: FakeStripe,
    owner_engine: AsyncEngine,
) -> None:
    customer = await _upgrade(billed, owner, stripe_server)
    await deliver(billed, event("invoice.payment_failed", invoice(customer)))
    assert (await _state(billed, owner))["status"] == "past_due"
    assert await _tenant(owner_engine, owner) == ("team", "active")  # within the grace period
    sessionmaker = stripe_app.state.sessionmaker
    async with sessionmaker() as session:  # the meter's pass, a day before the grace ends
        early = utcnow() + timedelta(days=6)
        assert owner.tenant_id not in await enforce_grace(
            session, stripe_app.state.redis, stripe_settings, now=early
        )
        await commit(session)
    async with sessionmaker() as session:  # ... and once it is over
        late = utcnow() + timedelta(days=8)
        assert owner.tenant_id in await enforce_grace(
            session, stripe_app.state.redis, stripe_settings, now=late
        )
        await commit(session)
    assert await _tenant(owner_engine, owner) == ("team", "suspended")
    assert_error(await billed.get("/api/v1/me", headers=owner.headers), 403, "tenant_suspended")
    await deliver(billed, event("invoice.paid", invoice(customer)))
    assert await _tenant(owner_engine, owner) == ("team", "active")
    assert (await billed.get("/api/v1/me", headers=owner.headers)).status_code == 200
    actions = await _actions(owner_engine, owner)
    assert actions[-3:] == ["tenant.suspended", "billing.payment_succeeded", "tenant.resumed"]


async def test_a_suspension_for_an_unpaid_invoice_drops_the_fires_released_ahead(
    stripe_app: FastAPI,
    stripe_settings: Settings,
    billed: AsyncClient,
    owner: Account,
    stripe_server: FakeStripe,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    """A fire released ahead would start on resume; suspended, the tenant's instants are
    ``skipped``, so the suspension drops it (its tick says why)."""
    customer = await _upgrade(billed, owner, stripe_server)
    job = await scheduled_job(owner, via=billed, cron="* * * * *")
    instant = await next_instant(owner_engine, job["id"])
    await fire(stripe_app, owner, instant - timedelta(seconds=30), settings=stripe_settings)
    sessionmaker = stripe_app.state.sessionmaker
    runs = "SELECT status FROM runs WHERE job_id = :job AND trigger = 'schedule'"
    async with owner_engine.connect() as conn:
        assert (await conn.execute(text(runs), {"job": job["id"]})).scalars().all() == ["queued"]
    await deliver(billed, event("invoice.payment_failed", invoice(customer)))
    async with sessionmaker() as session:
        late = utcnow() + timedelta(days=8)
        await enforce_grace(session, stripe_app.state.redis, stripe_settings, now=late)
        await commit(session)
    assert await _tenant(owner_engine, owner) == ("team", "suspended")
    async with owner_engine.connect() as conn:
        assert (await conn.execute(text(runs), {"job": job["id"]})).scalars().all() == []
        tick = (
            await conn.execute(
                text("SELECT outcome, reason FROM schedule_ticks WHERE job_id = :job"),
                {"job": job["id"]},
            )
        ).one()
    assert tick.outcome == "superseded" and "suspended before this instant" in tick.reason
    await deliver(billed, event("invoice.paid", invoice(customer)))


async def test_a_payment_does_not_resume_a_tenant_an_administrator_suspended(
    billed: AsyncClient,
    owner: Account,
    superuser: Account,
    stripe_server: FakeStripe,
    owner_engine: AsyncEngine,
) -> None:
    customer = await _upgrade(billed, owner, stripe_server)
    suspend = await billed.post(
        f"/api/v1/admin/tenants/{owner.tenant_id}/suspend", headers=superuser.headers
    )
    assert suspend.status_code == 200, suspend.text
    await deliver(billed, event("invoice.paid", invoice(customer)))
    assert await _tenant(owner_engine, owner) == ("team", "suspended")


async def test_a_cancelled_subscription_returns_to_free(
    billed: AsyncClient, owner: Account, stripe_server: FakeStripe, owner_engine: AsyncEngine
) -> None:
    customer = await _upgrade(billed, owner, stripe_server)
    deleted = event(
        "customer.subscription.deleted",
        subscription(customer, owner.tenant_id, PRICES["team"], status="canceled"),
    )
    assert (await deliver(billed, deleted)).status_code == 200
    assert await _tenant(owner_engine, owner) == ("free", "active")
    assert (await _state(billed, owner))["status"] == "canceled"


async def test_billing_state_anonymous_and_viewer(billed: AsyncClient, owner: Account) -> None:
    assert_error(await billed.get(BILLING), 401, "unauthenticated")
    viewer = await create_member(billed, owner, "viewer")
    state = await _state(billed, viewer)
    assert state == {
        "billing": "stripe",
        "plan": "free",
        "status": "none",
        "past_due_since": None,
        "suspended_by_billing": False,
        "has_customer": False,
    }
