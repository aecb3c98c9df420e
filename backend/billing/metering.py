"""The meter: rolls each tenant's usage of a day up into ``usage_daily``.

Nothing is counted per task: runs, task-seconds and log bytes are read back from the
tables the API and the engine already write (runs by ``ix_runs_recent``, finished task
runs by ``ix_task_runs_finished``, log lines by ``ix_task_logs_logged``), and API requests
from the Redis counter the authentication increments (``baton:{t}:api:day:<date>``). Each
pass recomputes today and yesterday (a request counted just before midnight is flushed
after it) and *replaces* their rows, so a pass repeated or cut short counts nothing twice.

Each pass then applies the retention (``backend.retention``: each tenant's history older
than its plan's ``log_retention_days``, in bounded batches). With Stripe billing, each pass
also suspends the tenants whose grace period after a failed
payment is over (``stripe_billing.enforce_grace``) and reports the usage to Stripe's
Billing Meters (``meter_reporter.report_usage``, once per increment). It runs as a loop of
its own beside the engine (``backend/processes.py``), one short
transaction per tenant per pass, every ``BATON_METERING_SECONDS``.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, time, timedelta

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.billing.meter_reporter import report_usage
from backend.billing.stripe_billing import enforce_grace
from backend.core.db import commit, tenant_transaction
from backend.core.models import utcnow
from backend.core.settings import Settings
from backend.retention.service import prune
from backend.tenants.repository import TenantDirectory
from kernel.runtime.waits import wait_event
from kernel.wire import keys

log = structlog.get_logger(__name__)

# One statement per tenant and day: the three counts from the history tables, the API
# requests as flushed from Redis, written over whatever an earlier pass wrote.
_ROLL_UP = text(
    """
    INSERT INTO usage_daily (tenant_id, day, runs, task_seconds, log_bytes, api_requests,
                             updated_at)
    SELECT :tenant, :day, used.runs, used.task_seconds, used.log_bytes, used.api_requests, now()
    FROM (SELECT
        (SELECT count(*) FROM runs
          WHERE tenant_id = :tenant AND created_at >= :start AND created_at < :end) AS runs,
        (SELECT coalesce(sum(extract(epoch FROM finished_at - started_at)), 0)::bigint
           FROM task_runs
          WHERE tenant_id = :tenant AND finished_at >= :start AND finished_at < :end
            AND started_at IS NOT NULL) AS task_seconds,
        (SELECT coalesce(sum(octet_length(line)), 0) FROM task_logs
          WHERE tenant_id = :tenant AND logged_at >= :start AND logged_at < :end)
            AS log_bytes,
        CAST(:api_requests AS bigint) AS api_requests
    ) AS used
    WHERE used.runs > 0 OR used.task_seconds > 0 OR used.log_bytes > 0 OR used.api_requests > 0
    ON CONFLICT (tenant_id, day) DO UPDATE SET
        runs = excluded.runs, task_seconds = excluded.task_seconds,
        log_bytes = greatest(usage_daily.log_bytes, excluded.log_bytes),
        api_requests = greatest(usage_daily.api_requests, excluded.api_requests),
        updated_at = excluded.updated_at
    """
)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), UTC)
    return start, start + timedelta(days=1)


async def roll_up_tenant(
    session: AsyncSession, redis: Redis, tenant_id: uuid.UUID, day: date
) -> None:
    """Write the tenant's usage of ``day`` (the session is scoped to the tenant); a day
    without any usage gets no row.

    API requests and log bytes only grow (``greatest``): a counter that expired in Redis,
    or log lines removed by retention, leave the value written before in place."""
    start, end = day_bounds(day)
    raw = await redis.get(keys.api_requests_day(str(tenant_id), day.isoformat()))
    await session.execute(
        _ROLL_UP,
        {
            "tenant": tenant_id,
            "day": day,
            "start": start,
            "end": end,
            "api_requests": int(raw or 0),
        },
    )


async def roll_up(
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis,
    *,
    days: list[date] | None = None,
    tenants: list[uuid.UUID] | None = None,
) -> int:
    """One pass over every tenant (or ``tenants``) for ``days`` (default: yesterday and
    today, UTC); returns how many tenant-days were written. A tenant that fails is logged
    and skipped: the next pass writes it."""
    today = utcnow().date()
    days = days or [today - timedelta(days=1), today]
    if tenants is None:
        async with sessionmaker() as session:
            tenants = [t.id for t in await TenantDirectory(session).all()]
    written = 0
    for tenant_id in tenants:
        try:
            async with tenant_transaction(sessionmaker, tenant_id) as session:
                for day in days:
                    await roll_up_tenant(session, redis, tenant_id, day)
            written += len(days)
        except (RedisError, OSError, SQLAlchemyError) as error:
            log.warning(
                "metering.tenant_failed", tenant_id=str(tenant_id), error=type(error).__name__
            )
    return written


class Meter:
    """Rolls usage up every ``interval`` seconds until :meth:`stop`."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        *,
        interval: float,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.redis = redis
        self.interval = interval
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """End :meth:`run` after the current pass."""
        self._stopping.set()

    async def run(self) -> None:
        """A pass every ``interval`` seconds; a failed pass is logged and retried."""
        while not self._stopping.is_set():
            try:
                written = await roll_up(self.sessionmaker, self.redis)
                log.debug("metering.rolled_up", tenant_days=written)
                if self.settings is not None:  # after the rollup counted what goes
                    await prune(self.sessionmaker, self.settings)
                if self.settings is not None and self.settings.billing == "stripe":
                    # Past-due subscriptions reach the end of their grace period here too,
                    # not only when Stripe sends the next event.
                    async with self.sessionmaker() as session:
                        await enforce_grace(session, self.redis, self.settings)
                        await commit(session)
                    # The day's usage just rolled up goes to Stripe's meters (once).
                    reported = await report_usage(self.sessionmaker, self.settings)
                    log.debug("metering.reported", meter_events=reported)
            except (RedisError, OSError, SQLAlchemyError) as error:
                log.warning("metering.failed", error=type(error).__name__)
            await wait_event(self._stopping, self.interval)
