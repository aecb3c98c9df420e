"""The meter reporter: each tenant's daily usage sent to Stripe Billing Meters, once.

Run by the meter's loop after each rollup (``metering.Meter``) when Stripe billing has a
metered price (``BATON_STRIPE_METERED_PRICE``). For every tenant that is a Stripe customer
with a live subscription, and for each meter of ``BATON_STRIPE_METERS`` (a ``usage_daily``
column -> a Stripe meter's event name; task-seconds by default), the days the meter still
rewrites (``REPORT_DAYS``) are compared with what was already reported for them
(``meter_reports``); what grew is reported as one more meter event.

Never twice, across retries and crashes, in two steps:

1. **Plan** (one transaction per tenant): the increment is written to ``meter_reports``
   with its value, its timestamp and a stable identifier,
   ``baton-<tenant>-<day>-<meter>-<seq>``, and committed *before* anything is sent. ``seq``
   is part of the primary key, so two reporters planning the same increment at once
   conflict instead of planning it twice.
2. **Send**: every unsent row goes to ``POST /v1/billing/meter_events`` with that
   identifier (Stripe deduplicates events by it) and the same value as the idempotency
   key, then is marked ``sent_at``. A reporter that dies between Stripe's answer and the
   mark sends the row again on its next pass - same identifier, same value, same
   timestamp - and Stripe counts it once; the next plan counts the unsent row as
   reported already, so the usage is never planned a second time.

Stripe's identifier uniqueness holds for at least 24 hours: a reporter down for longer
than that after sending, before recording, is the one case left to Stripe's judgement.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import stripe
import structlog
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.billing.models import MeterReport
from backend.billing.stripe_billing import client
from backend.core.db import tenant_transaction
from backend.core.models import utcnow
from backend.core.settings import Settings

log = structlog.get_logger(__name__)

# The days planned on each pass: today, yesterday (which the meter still rewrites) and
# the day before (a pass that ran just before midnight, or a short outage).
REPORT_DAYS = 3
# Subscription states whose usage is billed (a canceled one's unsent rows still go out).
BILLED_STATUSES = ("active", "trialing", "past_due")
# Rows sent per tenant and pass at most (the rest on the next pass).
SEND_BATCH = 500

_CUSTOMERS = text(
    "SELECT tenant, customer_id, status FROM billing_accounts WHERE customer_id IS NOT NULL"
)
_USED = text(
    "SELECT runs, task_seconds, log_bytes, api_requests FROM usage_daily"
    " WHERE tenant_id = :t AND day = :d"
)
_REPORTED = text(
    "SELECT coalesce(sum(value), 0) AS reported, coalesce(max(seq), 0) AS seq"
    " FROM meter_reports WHERE tenant_id = :t AND day = :d AND meter = :m"
)
_PLAN = text(
    "INSERT INTO meter_reports (tenant_id, day, meter, seq, value, identifier, event_name,"
    " customer_id, event_time) VALUES (:t, :d, :m, :seq, :value, :identifier, :event_name,"
    " :customer, :event_time) ON CONFLICT DO NOTHING RETURNING seq"
)
_MARK_SENT = text(
    "UPDATE meter_reports SET sent_at = now() WHERE tenant_id = :t AND identifier = :identifier"
    " AND sent_at IS NULL"
)


def enabled(settings: Settings) -> bool:
    """Whether usage is reported: Stripe billing with a metered price and a meter."""
    return (
        settings.billing == "stripe"
        and bool(settings.stripe_metered_price)
        and bool(settings.stripe_meters)
    )


def identifier(tenant_id: uuid.UUID, day: date, meter: str, seq: int) -> str:
    """The meter event's identifier: the same for a row however often it is sent."""
    return f"baton-{tenant_id.hex}-{day:%Y%m%d}-{meter}-{seq}"


def _event_time(day: date, now: datetime) -> int:
    """The event's timestamp: the day's last second, or now for today (Stripe refuses
    timestamps more than 5 minutes ahead)."""
    last_second = datetime.combine(day + timedelta(days=1), time(0), UTC) - timedelta(seconds=1)
    return int(min(last_second, now).timestamp())


async def plan_tenant(
    session: AsyncSession,
    settings: Settings,
    tenant_id: uuid.UUID,
    customer_id: str,
    days: list[date],
    *,
    now: datetime,
) -> int:
    """Write (not send) the increments of the tenant's usage on ``days`` that no row
    covers yet (the session is scoped to the tenant); how many rows."""
    planned = 0
    for day in days:
        params = {"t": tenant_id, "d": day}
        row = (await session.execute(_USED, params)).first()
        for meter, event_name in settings.stripe_meters.items():
            used = int(getattr(row, meter)) if row is not None else 0
            reported, seq = (await session.execute(_REPORTED, {**params, "m": meter})).one()
            delta = used - int(reported)
            if delta < 0:
                # Usage rows only grow; a smaller one (a database restored, a row edited
                # by hand) is not "negative usage" to send.
                log.warning(
                    "billing.meter_usage_shrank",
                    tenant_id=str(tenant_id),
                    day=day.isoformat(),
                    meter=meter,
                    used=used,
                    reported=int(reported),
                )
            if delta <= 0:
                continue
            inserted = await session.execute(
                _PLAN,
                {
                    **params,
                    "m": meter,
                    "seq": seq + 1,
                    "value": delta,
                    "identifier": identifier(tenant_id, day, meter, seq + 1),
                    "event_name": event_name,
                    "customer": customer_id,
                    "event_time": _event_time(day, now),
                },
            )
            planned += inserted.first() is not None
    return planned


async def _send(stripe_client: stripe.StripeClient, row: MeterReport) -> None:
    await stripe_client.v1.billing.meter_events.create_async(
        params={
            "event_name": row.event_name,
            "identifier": row.identifier,
            "timestamp": row.event_time,
            "payload": {"stripe_customer_id": row.customer_id, "value": str(row.value)},
        },
        options={"idempotency_key": row.identifier},
    )


async def send_tenant(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, tenant_id: uuid.UUID
) -> int:
    """Send the tenant's unsent rows, oldest first, each marked sent once Stripe took it;
    how many were sent. A row Stripe refuses is logged and tried again on the next pass;
    a network failure ends the tenant's turn (the next pass goes on)."""
    async with tenant_transaction(sessionmaker, tenant_id) as session:
        statement = (
            select(MeterReport)
            .where(col(MeterReport.tenant_id) == tenant_id, col(MeterReport.sent_at).is_(None))
            .order_by(col(MeterReport.created_at), col(MeterReport.day), col(MeterReport.seq))
            .limit(SEND_BATCH)
        )
        rows = list((await session.exec(statement)).all())
    if not rows:
        return 0
    stripe_client = client(settings)
    sent = 0
    for row in rows:
        try:
            await _send(stripe_client, row)
        except stripe.InvalidRequestError as error:
            log.error(
                "billing.meter_report_refused",
                tenant_id=str(tenant_id),
                identifier=row.identifier,
                error=str(error.user_message or error),
            )
            continue
        async with tenant_transaction(sessionmaker, tenant_id) as session:
            await session.execute(_MARK_SENT, {"t": tenant_id, "identifier": row.identifier})
        sent += 1
        log.info(
            "billing.meter_reported",
            tenant_id=str(tenant_id),
            identifier=row.identifier,
            meter=row.meter,
            value=row.value,
        )
    return sent


async def report_usage(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    tenants: list[uuid.UUID] | None = None,
    now: datetime | None = None,
) -> int:
    """One pass: plan each subscribed tenant's new usage, then send every unsent row;
    how many rows were sent. A tenant that fails is logged and skipped (its rows wait for
    the next pass)."""
    if not enabled(settings):
        return 0
    now = now or utcnow()
    days = [now.date() - timedelta(days=n) for n in range(REPORT_DAYS - 1, -1, -1)]
    async with sessionmaker() as session:
        accounts = list((await session.execute(_CUSTOMERS)).all())
    sent = 0
    for account in accounts:
        tenant_id: uuid.UUID = account.tenant
        if tenants is not None and tenant_id not in tenants:
            continue
        try:
            if account.status in BILLED_STATUSES:
                async with tenant_transaction(sessionmaker, tenant_id) as session:
                    await plan_tenant(
                        session, settings, tenant_id, account.customer_id, days, now=now
                    )
            sent += await send_tenant(sessionmaker, settings, tenant_id)
        except (stripe.StripeError, SQLAlchemyError, OSError) as error:
            log.warning(
                "billing.meter_report_failed",
                tenant_id=str(tenant_id),
                error=type(error).__name__,
            )
    return sent
