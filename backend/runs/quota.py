"""The plan limits a trigger checks: runs per month and task-seconds per month.

Both are read from the tables the engine already writes (``ix_runs_recent`` for runs;
the month's finished task runs for task-seconds), so checking them adds no write.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.errors import EmailUnverified
from backend.core.principal import Principal
from backend.plans.service import Limits, month_start, next_month_start, require
from backend.runs.models import Run, TaskRun
from kernel.dag.status import RunStatus


async def runs_since(session: AsyncSession, tenant_id: uuid.UUID, since: datetime) -> int:
    """Runs created since ``since``; a fire prepared ahead to be handed over at its
    instant (``planned``) counts from then, one released ahead (``queued``, admissible at
    its instant by the clock) from its preparation: it reserves its run of the month."""
    statement = select(func.count()).where(
        col(Run.tenant_id) == tenant_id,
        col(Run.created_at) >= since,
        col(Run.status) != RunStatus.planned,
    )
    return int((await session.execute(statement)).scalar_one())


async def task_seconds_since(session: AsyncSession, tenant_id: uuid.UUID, since: datetime) -> int:
    """Seconds the tenant's task runs that finished since ``since`` ran (start to finish)."""
    seconds = func.coalesce(
        func.sum(func.extract("epoch", col(TaskRun.finished_at) - col(TaskRun.started_at))), 0
    )
    statement = select(seconds).where(
        col(TaskRun.tenant_id) == tenant_id,
        col(TaskRun.finished_at) >= since,
        col(TaskRun.started_at).is_not(None),
    )
    return int((await session.execute(statement)).scalar_one())


async def check_run_quota(
    session: AsyncSession, principal: Principal, *, adding: int, now: datetime
) -> None:
    """Refuse (402 ``quota_exceeded``) ``adding`` new runs past the plan's runs per month, or
    any run once the month's task-seconds are used up; refuse (403 ``email_unverified``)
    a caller whose address the installation requires verified and is not."""
    if not adding:
        return
    if principal.unverified_email:
        raise EmailUnverified("Verify your email address before running jobs")
    await check_run_limits(
        session, principal.tenant_id, Limits.of_principal(principal), adding=adding, now=now
    )


async def check_run_limits(
    session: AsyncSession, tenant_id: uuid.UUID, limits: Limits, *, adding: int, now: datetime
) -> None:
    """The plan part of :func:`check_run_quota`, for triggers without a user (webhooks,
    upstream runs): 402 ``quota_exceeded`` past runs per month or task-seconds."""
    if not adding:
        return
    start, resets = month_start(now), next_month_start(now)
    if limits.of("runs_per_month") is not None:
        used = await runs_since(session, tenant_id, start)
        require(
            limits,
            "runs_per_month",
            usage=used,
            adding=adding,
            resets_at=resets,
            tenant_id=tenant_id,
        )
    if limits.of("task_seconds_per_month") is not None:
        used = await task_seconds_since(session, tenant_id, start)
        require(
            limits,
            "task_seconds_per_month",
            usage=used,
            adding=0,
            resets_at=resets,
            tenant_id=tenant_id,
        )
