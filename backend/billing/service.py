"""The tenant's usage: the month's days as metered, and each plan limit against what is
used of it now."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.billing.repository import UsageRepository
from backend.billing.schemas import LimitUsage, UsageCounts, UsageDayPublic, UsageReport
from backend.core.errors import ValidationFailed
from backend.core.models import utcnow
from backend.core.principal import Principal
from backend.jobs.repository import JobRepository
from backend.plans.catalog import LIMITS, WARNING_FRACTION
from backend.plans.service import Limits, month_start, next_month_start
from backend.runs.quota import runs_since, task_seconds_since
from backend.tenants.repository import MembershipRepository


def _period(month: str | None) -> tuple[datetime, datetime, bool]:
    """(start, end, is the current month) of ``YYYY-MM``, or of the current month."""
    now = utcnow()
    if month is None:
        return month_start(now), next_month_start(now), True
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError as error:
        raise ValidationFailed(
            "month must be YYYY-MM", details=[{"loc": ["query", "month"], "msg": str(error)}]
        ) from error
    return start, next_month_start(start), start == month_start(now)


async def usage_report(
    session: AsyncSession, principal: Principal, month: str | None = None
) -> UsageReport:
    """The month's usage by day (as the meter rolled it up) and, for the current month,
    every limit of the plan against the live usage the checks see."""
    start, end, current = _period(month)
    rows = await UsageRepository(session, principal.tenant_id).days(start.date(), end.date())
    days = [
        UsageDayPublic(
            day=r.day,
            runs=r.runs,
            task_seconds=r.task_seconds,
            log_bytes=r.log_bytes,
            api_requests=r.api_requests,
        )
        for r in rows
    ]
    totals = UsageCounts(
        runs=sum(d.runs for d in days),
        task_seconds=sum(d.task_seconds for d in days),
        log_bytes=sum(d.log_bytes for d in days),
        api_requests=sum(d.api_requests for d in days),
    )
    limits = Limits.of_principal(principal)
    used: dict[str, int | None] = dict.fromkeys(LIMITS)
    resets: dict[str, datetime | None] = dict.fromkeys(LIMITS)
    if current:
        tenant = principal.tenant_id
        used["runs_per_month"] = await runs_since(session, tenant, start)
        used["task_seconds_per_month"] = await task_seconds_since(session, tenant, start)
        used["members"] = await MembershipRepository(session, tenant).count()
        used["scheduled_jobs"] = await JobRepository(session, tenant).count_scheduled()
        resets["runs_per_month"] = resets["task_seconds_per_month"] = end
    else:
        used["runs_per_month"] = totals.runs
        used["task_seconds_per_month"] = totals.task_seconds
    report = [
        LimitUsage(
            name=name,
            allowed=limits.of(name),
            used=used[name],
            resets_at=resets[name],
            warning=_warning(limits.of(name), used[name]),
        )
        for name in LIMITS
    ]
    return UsageReport(
        plan=principal.plan,
        period_start=start,
        period_end=end,
        totals=totals,
        days=days,
        limits=report,
    )


def _warning(allowed: int | None, used: int | None) -> bool:
    return allowed is not None and used is not None and used >= WARNING_FRACTION * allowed
