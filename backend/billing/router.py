"""/usage, /billing: the tenant's metered usage, its subscription, Stripe Checkout and
Portal sessions, and Stripe's webhook (docs/billing.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request

from backend.billing import service, stripe_billing
from backend.billing.schemas import (
    BillingState,
    CheckoutCreate,
    InvoicePublic,
    RedirectUrl,
    UsageReport,
    WebhookReceipt,
)
from backend.core.db import SessionDep
from backend.core.deps import Authorized, RedisDep, SettingsDep
from backend.core.openapi import AUTHENTICATED, BY_ID, CONFLICT, errors
from backend.core.permissions import Permission
from backend.core.principal import Principal

router = APIRouter(prefix="/api/v1", tags=["billing"], responses=AUTHENTICATED)
# Called by Stripe, authenticated by the payload's signature instead of a bearer token.
webhook_router = APIRouter(prefix="/api/v1", tags=["billing"])


@router.get("/usage", response_model=UsageReport)
async def usage(
    session: SessionDep,
    month: Annotated[
        str | None,
        Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM; default: this month"),
    ] = None,
    principal: Principal = Authorized(Permission.profile_read),
) -> UsageReport:
    """The month's usage by UTC day (runs, task-seconds, log bytes, API requests; rolled
    up every few minutes) and each limit of the tenant's plan against what is used of it
    now (``warning`` at 80 %)."""
    return await service.usage_report(session, principal, month)


@router.get("/billing", response_model=BillingState)
async def billing_state(
    session: SessionDep,
    settings: SettingsDep,
    principal: Principal = Authorized(Permission.profile_read),
) -> BillingState:
    """The tenant's plan and subscription state."""
    return await stripe_billing.billing_state(session, settings, principal)


@router.get("/billing/invoices", response_model=list[InvoicePublic])
async def invoices(
    session: SessionDep,
    settings: SettingsDep,
    principal: Principal = Authorized(Permission.members_manage),
) -> list[InvoicePublic]:
    """The tenant's Stripe invoices, newest first, with links to Stripe's invoice page and
    PDF (owners and admins; an empty list when Stripe billing is off)."""
    return await stripe_billing.invoices(session, settings, principal)


@router.post("/billing/checkout", response_model=RedirectUrl, responses={**BY_ID, **CONFLICT})
async def checkout(
    body: CheckoutCreate,
    session: SessionDep,
    settings: SettingsDep,
    principal: Principal = Authorized(Permission.members_manage),
) -> RedirectUrl:
    """Start an upgrade: a Stripe Checkout session for the plan's subscription (owners
    only; 404 when Stripe billing is off or the plan has no price)."""
    return RedirectUrl(url=await stripe_billing.checkout(session, settings, principal, body.plan))


@router.post("/billing/portal", response_model=RedirectUrl, responses={**BY_ID, **CONFLICT})
async def portal(
    session: SessionDep,
    settings: SettingsDep,
    principal: Principal = Authorized(Permission.members_manage),
) -> RedirectUrl:
    """A Stripe Customer Portal session: cards, invoices, cancellation (owners only)."""
    return RedirectUrl(url=await stripe_billing.portal(session, settings, principal))


@webhook_router.post(
    "/billing/stripe/webhook", response_model=WebhookReceipt, responses=errors(400, 404)
)
async def stripe_webhook(
    request: Request,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    stripe_signature: Annotated[str | None, Header(max_length=2000)] = None,
) -> WebhookReceipt:
    """Stripe's events, verified with the endpoint's signing secret (400 otherwise) and
    applied once per event id (a replay answers ``duplicate``)."""
    event = stripe_billing.verify(settings, await request.body(), stripe_signature)
    applied = await stripe_billing.handle_event(session, redis, settings, event)
    return WebhookReceipt(received=True, duplicate=not applied)
