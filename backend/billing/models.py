"""``usage_daily``: one row per tenant and UTC day, written by the meter (tenant-owned,
row-level security)."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from backend.core.models import tenant_pk, timestamp


class UsageDay(SQLModel, table=True):
    __tablename__ = "usage_daily"

    tenant_id: uuid.UUID = tenant_pk()
    day: date = Field(primary_key=True)
    runs: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    task_seconds: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    log_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    api_requests: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = timestamp()


class BillingAccount(SQLModel, table=True):
    """A tenant's Stripe customer and subscription state. A platform table (like
    ``tenants``; no row-level security): Stripe's webhooks name a customer, not a tenant,
    and are processed outside any tenant's scope. ``tenant`` is the tenant's id."""

    __tablename__ = "billing_accounts"

    tenant: uuid.UUID = Field(primary_key=True, foreign_key="tenants.id")
    customer_id: str | None = Field(default=None, max_length=255, unique=True)
    subscription_id: str | None = Field(default=None, max_length=255)
    status: str = Field(default="none", max_length=30)  # Stripe's subscription status
    past_due_since: datetime | None = timestamp(nullable=True, default_now=False)
    suspended_by_billing: bool = False
    # The ``created`` time of the newest subscription/invoice event applied: an older one
    # arriving late (Stripe does not order deliveries) changes nothing.
    last_event_at: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = timestamp()


class StripeEvent(SQLModel, table=True):
    """The ledger of Stripe events received: a replayed delivery finds its id here."""

    __tablename__ = "stripe_events"

    id: str = Field(primary_key=True, max_length=255)
    type: str = Field(max_length=100)
    created: int = Field(sa_column=Column(BigInteger, nullable=False))
    received_at: datetime = timestamp()


class MeterReport(SQLModel, table=True):
    """Usage sent (or about to be sent) to a Stripe Billing Meter (tenant-owned, row-level
    security). One row per increment of a tenant's day of one meter: written and committed
    *before* it is sent, with the identifier Stripe deduplicates by, and marked ``sent_at``
    once Stripe answered. A row still unsent after a crash is sent again with the same
    identifier and value, so Stripe counts it once (``billing/meter_reporter.py``)."""

    __tablename__ = "meter_reports"
    __table_args__ = (UniqueConstraint("tenant_id", "identifier"),)

    tenant_id: uuid.UUID = tenant_pk()
    day: date = Field(primary_key=True)
    meter: str = Field(primary_key=True, max_length=40)  # a usage_daily column
    seq: int = Field(primary_key=True)
    value: int = Field(sa_column=Column(BigInteger, nullable=False))
    identifier: str = Field(max_length=100)
    event_name: str = Field(max_length=100)
    customer_id: str = Field(max_length=255)
    event_time: int = Field(sa_column=Column(BigInteger, nullable=False))  # Unix seconds
    created_at: datetime = timestamp()
    sent_at: datetime | None = timestamp(nullable=True, default_now=False)
