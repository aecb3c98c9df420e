"""Usage reported to Stripe Billing Meters, once, across retries and a reporter crash.

Stripe's servers cannot be reached here: the reporter's real ``stripe`` client talks over
HTTP to the local stand-in of ``tests/billing/fake_stripe.py``, which counts meter events
as Stripe documents it (an identifier seen before is not counted again; a repeated
idempotency key gets the first answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.billing.meter_reporter import identifier, report_usage
from backend.billing.metering import Meter
from backend.core.settings import Settings
from tests.billing.fake_stripe import FakeStripe
from tests.fixtures.execution import running_in_task
from tests.fixtures.factories import Account
from tests.fixtures.waiting import eventually

EVENT = "baton_task_seconds"


def _today() -> date:
    return datetime.now(UTC).date()


async def _subscribe(owner_engine: AsyncEngine, account: Account, status: str = "active") -> str:
    """Make the tenant a Stripe customer with a subscription (as the webhooks would); the
    customer id."""
    customer = f"cus_{uuid.uuid4().hex[:14]}"
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO billing_accounts (tenant, customer_id, subscription_id, status)"
                " VALUES (:t, :c, :s, :status)"
            ),
            {"t": account.tenant_id, "c": customer, "s": f"sub_{customer[4:]}", "status": status},
        )
    return customer


async def _usage(owner_engine: AsyncEngine, account: Account, day: date, seconds: int) -> None:
    """The tenant's usage row of ``day`` as the meter writes it."""
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO usage_daily (tenant_id, day, runs, task_seconds)"
                " VALUES (:t, :d, 1, :s)"
                " ON CONFLICT (tenant_id, day) DO UPDATE SET task_seconds = excluded.task_seconds"
            ),
            {"t": account.tenant_id, "d": day, "s": seconds},
        )


async def _reports(owner_engine: AsyncEngine, account: Account) -> list[Any]:
    async with owner_engine.connect() as conn:
        return list(
            await conn.execute(
                text(
                    "SELECT day, meter, seq, value, identifier, sent_at FROM meter_reports"
                    " WHERE tenant_id = :t ORDER BY day, seq"
                ),
                {"t": account.tenant_id},
            )
        )


async def _customer_using(
    owner_engine: AsyncEngine, account: Account, seconds: dict[date, int]
) -> str:
    """A subscribed tenant whose usage of each day is ``seconds`` (task-seconds); its Stripe
    customer id."""
    customer = await _subscribe(owner_engine, account)
    for day, used in seconds.items():
        await _usage(owner_engine, account, day, used)
    return customer


def _sent_with(stripe_server: FakeStripe, ident: str) -> int:
    return sum(
        1 for form in stripe_server.calls("/v1/billing/meter_events") if form["identifier"] == ident
    )


async def test_usage_is_reported_once_per_increment(
    stripe_app: FastAPI,
    stripe_settings: Settings,
    stripe_server: FakeStripe,
    owner: Account,
    owner_engine: AsyncEngine,
) -> None:
    sessionmaker = stripe_app.state.sessionmaker
    today = _today()
    customer = await _customer_using(
        owner_engine, owner, {today - timedelta(days=1): 700, today: 50}
    )

    assert await report_usage(sessionmaker, stripe_settings, tenants=[owner.tenant_id]) == 2
    assert stripe_server.metered(customer, EVENT) == 750
    sent = stripe_server.calls("/v1/billing/meter_events")[-1]
    assert sent["payload[stripe_customer_id]"] == customer
    assert sent["identifier"] == identifier(owner.tenant_id, today, "task_seconds", 1)
    # A second pass finds nothing new: nothing sent.
    assert await report_usage(sessionmaker, stripe_settings, tenants=[owner.tenant_id]) == 0

    # Today's usage grows: only the increment goes out, under a new identifier.
    await _usage(owner_engine, owner, today, 80)
    assert await report_usage(sessionmaker, stripe_settings, tenants=[owner.tenant_id]) == 1
    assert stripe_server.metered(customer, EVENT) == 780
    rows = await _reports(owner_engine, owner)
    assert [(r.day, r.seq, r.value) for r in rows] == [
        (today - timedelta(days=1), 1, 700),
        (today, 1, 50),
        (today, 2, 30),
    ]
    assert all(r.sent_at is not None for r in rows)


async def test_a_reporter_killed_after_sending_does_not_count_twice(
    stripe_app: FastAPI,
    stripe_settings: Settings,
    stripe_server: FakeStripe,
    owner: Account,
    owner_engine: AsyncEngine,
) -> None:
    sessionmaker = stripe_app.state.sessionmaker
    today = _today()
    customer = await _customer_using(
        owner_engine, owner, {today - timedelta(days=1): 400, today: 25}
    )
    first = identifier(owner.tenant_id, today - timedelta(days=1), "task_seconds", 1)

    release = stripe_server.hold_meter_events()
    try:
        reporter = asyncio.create_task(
            report_usage(sessionmaker, stripe_settings, tenants=[owner.tenant_id])
        )
        # Stripe has taken (and counted) the first event; its answer is held back.
        await eventually(lambda: _sent_with(stripe_server, first), lambda n: n == 1)
        assert stripe_server.metered(customer, EVENT) == 400
        reporter.cancel()  # killed between Stripe taking the event and Baton recording it
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
    finally:
        release.set()
        stripe_server.held = None

    rows = await _reports(owner_engine, owner)
    assert [(r.value, r.sent_at) for r in rows] == [(400, None), (25, None)]  # planned, unsent

    # Restarted: the unsent rows go again with the same identifiers; Stripe counts once.
    assert await report_usage(sessionmaker, stripe_settings, tenants=[owner.tenant_id]) == 2
    assert _sent_with(stripe_server, first) == 2
    assert stripe_server.metered(customer, EVENT) == 425
    assert all(r.sent_at is not None for r in await _reports(owner_engine, owner))
    assert await report_usage(sessionmaker, stripe_settings, tenants=[owner.tenant_id]) == 0
    assert stripe_server.metered(customer, EVENT) == 425


async def test_only_subscribed_tenants_are_reported(
    stripe_app: FastAPI,
    stripe_settings: Settings,
    settings: Settings,
    stripe_server: FakeStripe,
    owner: Account,
    stranger: Account,
    owner_engine: AsyncEngine,
) -> None:
    sessionmaker = stripe_app.state.sessionmaker
    customer = await _subscribe(owner_engine, owner, status="canceled")
    await _usage(owner_engine, owner, _today(), 90)
    await _usage(owner_engine, stranger, _today(), 90)  # not a Stripe customer
    tenants = [owner.tenant_id, stranger.tenant_id]
    assert await report_usage(sessionmaker, stripe_settings, tenants=tenants) == 0
    assert stripe_server.metered(customer, EVENT) == 0
    assert await _reports(owner_engine, owner) == []
    # Without Stripe billing (on-prem) nothing is reported at all.
    assert settings.billing == "none"
    assert await report_usage(sessionmaker, settings, tenants=tenants) == 0


async def test_the_meter_loop_reports(
    stripe_app: FastAPI,
    stripe_settings: Settings,
    stripe_server: FakeStripe,
    owner: Account,
    owner_engine: AsyncEngine,
    redis: Redis,
) -> None:
    """The meter's own loop reports after its rollup (the day before yesterday, which the
    rollup does not rewrite, holds the usage)."""
    customer = await _subscribe(owner_engine, owner)
    meter = Meter(stripe_app.state.sessionmaker, redis, interval=0.2, settings=stripe_settings)
    await _usage(owner_engine, owner, _today() - timedelta(days=2), 33)  # not rewritten
    async with running_in_task(meter):
        await eventually(
            lambda: stripe_server.metered(customer, EVENT), lambda v: v == 33, what="reported"
        )
