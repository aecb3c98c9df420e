"""Stripe events as Stripe sends them, signed with Stripe's scheme (``t=…,v1=`` HMAC-SHA256
over ``"<t>.<payload>"``, computed by the stripe library's own signer)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import stripe
from httpx import AsyncClient, Response

WEBHOOK = "/api/v1/billing/stripe/webhook"
WEBHOOK_SECRET = "whsec_test_baton"
PRICES = {"team": "price_team_monthly", "business": "price_business_monthly"}


def event(kind: str, obj: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created if created is not None else int(time.time()),
        "type": kind,
        "livemode": False,
        "data": {"object": obj},
    }


def checkout_session(customer: str, tenant_id: uuid.UUID, plan: str = "team") -> dict[str, Any]:
    """A completed Checkout Session of ``customer`` for ``plan``, as Baton started it."""
    return {
        "id": f"cs_{uuid.uuid4().hex[:10]}",
        "object": "checkout.session",
        "customer": customer,
        "client_reference_id": str(tenant_id),
        "subscription": f"sub_{customer[4:]}",
        "metadata": {"tenant_id": str(tenant_id), "plan": plan},
    }


def subscription(
    customer: str, tenant_id: uuid.UUID, price: str, status: str = "active", plan: str = "team"
) -> dict[str, Any]:
    return {
        "id": f"sub_{customer[4:]}",
        "object": "subscription",
        "customer": customer,
        "status": status,
        "metadata": {"tenant_id": str(tenant_id), "plan": plan},
        "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": price}}]},
    }


def invoice(customer: str) -> dict[str, Any]:
    return {"id": f"in_{uuid.uuid4().hex[:14]}", "object": "invoice", "customer": customer}


async def deliver(
    client: AsyncClient, body: dict[str, Any], *, secret: str = WEBHOOK_SECRET
) -> Response:
    payload = json.dumps(body)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret)
    return await client.post(
        WEBHOOK,
        content=payload,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )
