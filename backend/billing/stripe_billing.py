"""Stripe: Checkout for upgrades, the Customer Portal, and the webhook that changes a
tenant's plan and subscription state (docs/billing.md).

The webhook is verified with the endpoint's signing secret (``stripe.Webhook.
construct_event``) and processed once per event id through the ``stripe_events`` ledger:
a replayed delivery changes nothing. Stripe does not order deliveries, so a subscription
or invoice event older than the newest one applied to the account is recorded and
ignored. A failed payment makes the account past due; ``enforce_grace`` (the meter's
loop, and every webhook) suspends a tenant past due for longer than the grace period with
the suspension Baton already has; a paid invoice resumes it. Every change is audited in
the tenant's log, the actor being Stripe.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
import structlog
from redis.asyncio import Redis
from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit import service as audit
from backend.billing.models import BillingAccount
from backend.billing.schemas import BillingState, InvoicePublic
from backend.core.db import after_commit, scope_to_tenant
from backend.core.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
)
from backend.core.models import utcnow
from backend.core.permissions import Role
from backend.core.principal import Actor, Principal
from backend.core.settings import Settings
from backend.dispatch.signals import mark_tenant_due
from backend.plans.repository import PlanRepository
from backend.schedules.service import drop_fires_of_suspended
from backend.tenants.models import Tenant, TenantStatus
from backend.tenants.repository import TenantDirectory

log = structlog.get_logger(__name__)

STRIPE_ACTOR = Actor(type="system", label="stripe")
FREE_PLAN = "free"


def _require_stripe(settings: Settings) -> None:
    if settings.billing != "stripe":
        raise NotFound("Billing through Stripe is not enabled on this installation")


def _require_owner(principal: Principal) -> None:
    if not can_manage(principal):
        raise PermissionDenied("Only the tenant's owners manage its billing")


def client(settings: Settings) -> stripe.StripeClient:
    """A Stripe client over httpx (async), pointed at ``stripe_api_base``."""
    return stripe.StripeClient(
        settings.stripe_secret_key,
        base_addresses={"api": settings.stripe_api_base},
        http_client=stripe.HTTPXClient(),
        max_network_retries=2,
    )


def _dashboard_url(settings: Settings, path: str) -> str:
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    return base.rstrip("/") + path


async def account_of(session: AsyncSession, tenant_id: uuid.UUID) -> BillingAccount | None:
    return await session.get(BillingAccount, tenant_id)


async def _lock_account(session: AsyncSession, tenant_id: uuid.UUID) -> BillingAccount:
    """The tenant's account row, created if missing, locked until the transaction ends."""
    await session.execute(
        text("INSERT INTO billing_accounts (tenant) VALUES (:t) ON CONFLICT DO NOTHING"),
        {"t": tenant_id},
    )
    statement = (
        select(BillingAccount)
        .where(col(BillingAccount.tenant) == tenant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.exec(statement)).one()


async def billing_state(
    session: AsyncSession, settings: Settings, principal: Principal
) -> BillingState:
    """The tenant's plan and subscription state (any member)."""
    account = await account_of(session, principal.tenant_id)
    return BillingState(
        billing=settings.billing,
        plan=principal.plan,
        status=account.status if account else "none",
        past_due_since=account.past_due_since if account else None,
        suspended_by_billing=bool(account and account.suspended_by_billing),
        has_customer=bool(account and account.customer_id),
    )


def can_manage(principal: Principal) -> bool:
    """Whether the caller may start Checkout or open the portal (the tenant's owners)."""
    return principal.role == Role.owner


# Invoices listed at most (the portal has them all).
INVOICES_LISTED = 24


async def invoices(
    session: AsyncSession, settings: Settings, principal: Principal
) -> list[InvoicePublic]:
    """The tenant's Stripe invoices, newest first, with Stripe's links to view and download
    them; none before the tenant is a customer, and none without Stripe billing (no
    invoice exists then). 503 when Stripe does not answer."""
    if settings.billing != "stripe":
        return []
    account = await account_of(session, principal.tenant_id)
    if account is None or account.customer_id is None:
        return []
    try:
        listed = await client(settings).v1.invoices.list_async(
            params={"customer": account.customer_id, "limit": INVOICES_LISTED}
        )
    except stripe.StripeError as error:
        log.warning(
            "billing.invoices_unavailable",
            tenant_id=str(principal.tenant_id),
            error=type(error).__name__,
        )
        raise ServiceUnavailable("Stripe did not answer; try again shortly") from error
    return [
        InvoicePublic(
            id=str(item.id),
            number=item.number,
            status=item.status,
            amount_due=int(item.amount_due or 0),
            amount_paid=int(item.amount_paid or 0),
            currency=str(item.currency or ""),
            created=datetime.fromtimestamp(int(item.created or 0), UTC),
            hosted_invoice_url=item.hosted_invoice_url,
            invoice_pdf=item.invoice_pdf,
        )
        for item in listed.data
    ]


# ------------------------------------------------------------------------------ sessions


async def checkout(
    session: AsyncSession, settings: Settings, principal: Principal, plan: str
) -> str:
    """A Checkout session upgrading the tenant to ``plan`` (a flat monthly price, plus the
    metered task-seconds price when configured); its URL. Owners only."""
    _require_stripe(settings)
    _require_owner(principal)
    price = settings.stripe_prices.get(plan)
    if price is None or await PlanRepository(session).get(plan) is None:
        raise NotFound("No such paid plan")
    account = await _lock_account(session, principal.tenant_id)
    if account.subscription_id and account.status in ("active", "trialing", "past_due"):
        raise Conflict("The tenant has a subscription; change it in the billing portal")
    stripe_client = client(settings)
    tenant = str(principal.tenant_id)
    if account.customer_id is None:
        customer = await stripe_client.v1.customers.create_async(
            params={"email": principal.email, "metadata": {"tenant_id": tenant}},
            options={"idempotency_key": f"customer-{tenant}"},
        )
        account.customer_id = customer.id
        account.updated_at = utcnow()
        session.add(account)
        await session.flush()
    items: list[dict[str, Any]] = [{"price": price, "quantity": 1}]
    if settings.stripe_metered_price:
        items.append({"price": settings.stripe_metered_price})
    params: Any = {
        "mode": "subscription",
        "customer": account.customer_id,
        "client_reference_id": tenant,
        "line_items": items,
        "metadata": {"tenant_id": tenant, "plan": plan},
        "subscription_data": {"metadata": {"tenant_id": tenant, "plan": plan}},
        "success_url": _dashboard_url(settings, "/settings/billing?checkout=done"),
        "cancel_url": _dashboard_url(settings, "/settings/billing?checkout=cancelled"),
    }
    created = await stripe_client.v1.checkout.sessions.create_async(params=params)
    await audit.record_for(
        session,
        principal,
        "billing.checkout_started",
        target_type="tenant",
        target_id=principal.tenant_id,
        details={"plan": plan, "checkout_session": created.id},
    )
    return str(created.url)


async def portal(session: AsyncSession, settings: Settings, principal: Principal) -> str:
    """A Customer Portal session (cards, invoices, cancellation); its URL. Owners only;
    409 before the tenant has been a Stripe customer."""
    _require_stripe(settings)
    _require_owner(principal)
    account = await account_of(session, principal.tenant_id)
    if account is None or account.customer_id is None:
        raise Conflict("The tenant has no Stripe customer yet; upgrade first")
    created = await client(settings).v1.billing_portal.sessions.create_async(
        params={
            "customer": account.customer_id,
            "return_url": _dashboard_url(settings, "/settings/billing"),
        }
    )
    return str(created.url)


# ------------------------------------------------------------------------------ webhook


def verify(settings: Settings, payload: bytes, signature: str | None) -> dict[str, Any]:
    """The event, if ``signature`` is Stripe's for ``payload`` (400 otherwise)."""
    _require_stripe(settings)
    if not settings.stripe_webhook_secret:
        raise NotFound("No Stripe webhook secret is configured")
    try:
        stripe.Webhook.construct_event(payload, signature, settings.stripe_webhook_secret)
    except stripe.SignatureVerificationError as error:
        raise BadRequest("Invalid Stripe signature") from error
    except ValueError as error:
        raise BadRequest("Invalid Stripe payload") from error
    event: dict[str, Any] = json.loads(payload)
    if not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise BadRequest("Invalid Stripe event")
    return event


async def handle_event(
    session: AsyncSession, redis: Redis, settings: Settings, event: dict[str, Any]
) -> bool:
    """Apply a verified event once; False when its id was seen before."""
    inserted = await session.execute(
        text(
            "INSERT INTO stripe_events (id, type, created) VALUES (:id, :type, :created)"
            " ON CONFLICT (id) DO NOTHING RETURNING id"
        ),
        {"id": event["id"], "type": event["type"], "created": int(event.get("created") or 0)},
    )
    if inserted.first() is None:
        log.info("billing.event_replayed", event_id=event["id"], type=event["type"])
        return False
    kind = event["type"]
    obj = event.get("data", {}).get("object", {})
    created = int(event.get("created") or 0)
    if kind == "checkout.session.completed":
        await _checkout_completed(session, settings, obj, created)
    elif kind in (
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    ):
        await _subscription_changed(session, redis, settings, obj, created, kind)
    elif kind in ("invoice.paid", "invoice.payment_succeeded"):
        await _invoice_paid(session, redis, obj, created)
    elif kind == "invoice.payment_failed":
        await _invoice_failed(session, obj, created)
    else:
        log.info("billing.event_ignored", event_id=event["id"], type=kind)
    await enforce_grace(session, redis, settings)
    return True


def _tenant_from(obj: dict[str, Any]) -> uuid.UUID | None:
    candidate = obj.get("client_reference_id") or (obj.get("metadata") or {}).get("tenant_id")
    try:
        return uuid.UUID(str(candidate)) if candidate else None
    except ValueError:
        return None


async def _account_for(
    session: AsyncSession, obj: dict[str, Any]
) -> tuple[BillingAccount, Tenant] | None:
    """The account and tenant an object belongs to: by its customer, else by the tenant id
    Baton put in its metadata (a subscription event can arrive before the checkout's)."""
    customer = obj.get("customer")
    tenant_id: uuid.UUID | None = None
    if isinstance(customer, str):
        statement = select(BillingAccount.tenant).where(col(BillingAccount.customer_id) == customer)
        tenant_id = (await session.exec(statement)).first()
    tenant_id = tenant_id or _tenant_from(obj)
    if tenant_id is None:
        return None
    tenant = await TenantDirectory(session).lock(tenant_id)
    if tenant is None:
        return None
    account = await _lock_account(session, tenant_id)
    if account.customer_id is None and isinstance(customer, str):
        account.customer_id = customer
    return account, tenant


async def _audit(
    session: AsyncSession, tenant_id: uuid.UUID, action: str, details: dict[str, Any]
) -> None:
    await scope_to_tenant(session, tenant_id)
    await audit.record(
        session,
        tenant_id=tenant_id,
        actor=STRIPE_ACTOR,
        action=action,
        target_type="tenant",
        target_id=tenant_id,
        details=details,
    )


async def _set_plan(session: AsyncSession, tenant: Tenant, plan: str, why: str) -> None:
    if tenant.plan == plan or await PlanRepository(session).get(plan) is None:
        return
    previous = tenant.plan
    tenant.plan = plan
    session.add(tenant)
    await session.flush()
    await _audit(
        session, tenant.id, "billing.plan_changed", {"from": previous, "to": plan, "why": why}
    )


def _plan_of_subscription(settings: Settings, obj: dict[str, Any]) -> str | None:
    by_price = {price: plan for plan, price in settings.stripe_prices.items()}
    for item in (obj.get("items") or {}).get("data") or []:
        plan = by_price.get(str(((item or {}).get("price") or {}).get("id")))
        if plan is not None:
            return plan
    plan = (obj.get("metadata") or {}).get("plan")
    return plan if plan in settings.stripe_prices else None


async def _checkout_completed(
    session: AsyncSession, settings: Settings, obj: dict[str, Any], created: int
) -> None:
    found = await _account_for(session, obj)
    if found is None:
        log.warning("billing.unknown_tenant", object=obj.get("id"))
        return
    account, tenant = found
    if isinstance(obj.get("subscription"), str):
        account.subscription_id = account.subscription_id or obj["subscription"]
    account.updated_at = utcnow()
    session.add(account)
    await session.flush()
    plan = (obj.get("metadata") or {}).get("plan")
    # The subscription's own events carry its state; a checkout seen first sets the plan
    # unless a newer subscription event already did.
    if plan in settings.stripe_prices and account.last_event_at <= created:
        account.status = account.status if account.status != "none" else "active"
        await _set_plan(session, tenant, plan, "checkout.session.completed")
    await _audit(
        session, tenant.id, "billing.checkout_completed", {"plan": plan, "session": obj.get("id")}
    )


async def _subscription_changed(
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    obj: dict[str, Any],
    created: int,
    kind: str,
) -> None:
    found = await _account_for(session, obj)
    if found is None:
        log.warning("billing.unknown_tenant", object=obj.get("id"))
        return
    account, tenant = found
    if created < account.last_event_at:
        log.info("billing.event_out_of_order", tenant_id=str(tenant.id), type=kind)
        return
    account.last_event_at = created
    account.subscription_id = obj.get("id") or account.subscription_id
    status = "canceled" if kind.endswith(".deleted") else str(obj.get("status") or "active")
    previous_status = account.status
    account.status = status
    if status == "past_due" and account.past_due_since is None:
        account.past_due_since = datetime.fromtimestamp(created, UTC)
    if status in ("active", "trialing"):
        account.past_due_since = None
    account.updated_at = utcnow()
    session.add(account)
    await session.flush()
    if status in ("canceled", "incomplete_expired", "unpaid"):
        await _set_plan(session, tenant, FREE_PLAN, kind)
    elif status in ("active", "trialing", "past_due"):
        plan = _plan_of_subscription(settings, obj)
        if plan is not None:
            await _set_plan(session, tenant, plan, kind)
    if status in ("active", "trialing"):
        await _resume_if_suspended(session, redis, account, tenant)
    if previous_status != status:
        await _audit(
            session,
            tenant.id,
            "billing.subscription_status",
            {"from": previous_status, "to": status},
        )


async def _invoice_failed(session: AsyncSession, obj: dict[str, Any], created: int) -> None:
    found = await _account_for(session, obj)
    if found is None:
        return
    account, tenant = found
    if created < account.last_event_at:
        return
    account.last_event_at = created
    if account.past_due_since is None:
        account.past_due_since = datetime.fromtimestamp(created, UTC)
    previous = account.status
    account.status = "past_due"
    account.updated_at = utcnow()
    session.add(account)
    await session.flush()
    await _audit(
        session,
        tenant.id,
        "billing.payment_failed",
        {
            "invoice": obj.get("id"),
            "from": previous,
            "past_due_since": account.past_due_since.isoformat(),
        },
    )


async def _invoice_paid(
    session: AsyncSession, redis: Redis, obj: dict[str, Any], created: int
) -> None:
    found = await _account_for(session, obj)
    if found is None:
        return
    account, tenant = found
    if created < account.last_event_at:
        return
    account.last_event_at = created
    was = account.status
    account.status = "active"
    account.past_due_since = None
    account.updated_at = utcnow()
    session.add(account)
    await session.flush()
    await _audit(
        session, tenant.id, "billing.payment_succeeded", {"invoice": obj.get("id"), "from": was}
    )
    await _resume_if_suspended(session, redis, account, tenant)


async def _resume_if_suspended(
    session: AsyncSession, redis: Redis, account: BillingAccount, tenant: Tenant
) -> None:
    """Resume a tenant billing suspended (never one a platform administrator suspended)."""
    if not account.suspended_by_billing:
        return
    account.suspended_by_billing = False
    session.add(account)
    if tenant.status != TenantStatus.active:
        tenant.status = TenantStatus.active
        session.add(tenant)
        await session.flush()
        await _audit(session, tenant.id, "tenant.resumed", {"by": "billing"})
        tenant_id = tenant.id

        async def wake_engine() -> None:
            await mark_tenant_due(redis, tenant_id)

        after_commit(session, wake_engine)
    await session.flush()


async def enforce_grace(
    session: AsyncSession, redis: Redis, settings: Settings, *, now: datetime | None = None
) -> list[uuid.UUID]:
    """Suspend every tenant past due for longer than the grace period; their ids."""
    if settings.billing != "stripe":
        return []
    cutoff = (now or utcnow()) - timedelta(days=settings.billing_grace_days)
    statement = select(BillingAccount.tenant).where(
        col(BillingAccount.status) == "past_due",
        col(BillingAccount.past_due_since) <= cutoff,
        col(BillingAccount.suspended_by_billing).is_(False),
    )
    suspended = []
    for tenant_id in list((await session.exec(statement)).all()):
        tenant = await TenantDirectory(session).lock(tenant_id)
        account = await _lock_account(session, tenant_id)
        if tenant is None or account.status != "past_due":
            continue
        account.suspended_by_billing = True
        session.add(account)
        if tenant.status == TenantStatus.active:
            tenant.status = TenantStatus.suspended
            session.add(tenant)
            await session.flush()
            await _audit(
                session, tenant.id, "tenant.suspended", {"by": "billing", "reason": "past_due"}
            )
            await drop_fires_of_suspended(session, tenant.id)
        await session.flush()
        suspended.append(tenant_id)
        log.warning("billing.suspended", tenant_id=str(tenant_id))
    return suspended
