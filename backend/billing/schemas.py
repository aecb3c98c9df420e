"""Response bodies of the usage API."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field


class UsageCounts(BaseModel):
    runs: int = 0
    task_seconds: int = 0
    log_bytes: int = 0
    api_requests: int = 0


class UsageDayPublic(UsageCounts):
    day: date


class LimitUsage(BaseModel):
    """One limit of the plan against what the tenant uses of it now."""

    name: str
    allowed: int | None  # None: unlimited
    used: int | None  # None: not a quantity that accumulates (weight, retention)
    resets_at: datetime | None  # None: it does not reset by itself
    warning: bool  # at 80 % or more


class UsageReport(BaseModel):
    plan: str
    period_start: datetime
    period_end: datetime
    totals: UsageCounts
    days: list[UsageDayPublic]
    limits: list[LimitUsage]


class CheckoutCreate(BaseModel):
    """The plan to upgrade to through Stripe Checkout."""

    model_config = ConfigDict(extra="forbid")

    plan: str = Field(min_length=1, max_length=20, pattern=r"^[a-z][a-z0-9-]*$")


class RedirectUrl(BaseModel):
    """Where to send the browser (a Stripe-hosted page)."""

    url: str


class BillingState(BaseModel):
    billing: str  # none | manual | stripe
    plan: str
    status: str  # Stripe's subscription status, or "none"
    past_due_since: datetime | None
    suspended_by_billing: bool
    has_customer: bool


class WebhookReceipt(BaseModel):
    received: bool
    duplicate: bool


class InvoicePublic(BaseModel):
    """One of the tenant's Stripe invoices; the links are Stripe's hosted page and PDF."""

    id: str
    number: str | None
    status: str | None  # draft | open | paid | uncollectible | void
    amount_due: int  # in the currency's smallest unit (cents)
    amount_paid: int
    currency: str
    created: datetime
    hosted_invoice_url: str | None
    invoice_pdf: str | None
