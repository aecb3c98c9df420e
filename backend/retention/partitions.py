"""Weekly partitions of the append-only history tables (``task_logs``, ``schedule_ticks``):
created ahead of time, dropped whole once past every tenant's retention.

Migration 0014 partitions both tables by UTC week and provides the two SECURITY DEFINER
functions used here (the runtime role owns nothing and may not create or drop tables).
The engine calls :func:`maintain` at start and then every
``BATON_PARTITION_MAINTENANCE_SECONDS``: the current week and ``AHEAD`` more always exist
(rows outside every week land in the ``_default`` partition and move into their week when
it is created), and a week is dropped when it ends before the longest retention of any
tenant - never while some tenant keeps its history forever. Within the weeks still kept,
a tenant with a shorter retention loses its old rows to the retention's batched deletes
(``retention.service``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.models import utcnow
from backend.core.settings import Settings
from backend.plans.service import plan_limits
from backend.tenants.repository import TenantDirectory

log = structlog.get_logger(__name__)

TABLES = ("task_logs", "schedule_ticks")
AHEAD = timedelta(weeks=4)
RETENTION_LIMIT = "log_retention_days"

_ENSURE = text("SELECT history_ensure_partitions(:table, :start, :end)")
_DROP = text("SELECT history_drop_partitions(:table, :before)")


@dataclass
class PartitionReport:
    created: int = 0
    dropped: int = 0
    kept_after: datetime | None = None  # weeks ending before this were dropped


async def longest_retention(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> int | None:
    """The longest history retention of any tenant, in days (None: some tenant keeps its
    history forever, or there is no tenant)."""
    async with sessionmaker() as session:
        rows = await TenantDirectory(session).all()
        limits = await plan_limits(session, settings, {t.plan for t in rows})
    if not rows:
        return None
    days: list[int] = []
    for row in rows:
        value = limits[row.plan].of(RETENTION_LIMIT)
        if value is None:
            return None
        days.append(value)
    return max(days)


async def maintain(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    now: datetime | None = None,
) -> PartitionReport:
    """Create the weeks from this one to ``AHEAD`` and drop those past every retention."""
    now = now or utcnow()
    report = PartitionReport()
    keep = await longest_retention(sessionmaker, settings)
    if keep is not None:
        report.kept_after = now - timedelta(days=keep)
    async with sessionmaker() as session:
        for table in TABLES:
            created = await session.execute(
                _ENSURE, {"table": table, "start": now - timedelta(weeks=1), "end": now + AHEAD}
            )
            report.created += int(created.scalar_one())
            if report.kept_after is not None:
                dropped = await session.execute(
                    _DROP, {"table": table, "before": report.kept_after}
                )
                report.dropped += int(dropped.scalar_one())
        await session.commit()
    if report.created or report.dropped:
        log.info(
            "retention.partitions",
            created=report.created,
            dropped=report.dropped,
            kept_after=report.kept_after.isoformat() if report.kept_after else None,
        )
    return report
