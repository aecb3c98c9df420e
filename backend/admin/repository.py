"""Queries of the admin console that read inside one tenant at a time (row-level security)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.admin.schemas import TenantUsage
from backend.jobs.models import Job
from backend.runs.models import Run, TaskRun
from kernel.dag.status import TaskStatus


async def usage_of(session: AsyncSession, tenant_id: uuid.UUID, *, since: datetime) -> TenantUsage:
    """One tenant's usage in one round trip; each count walks an index of its own
    (jobs' primary key, ``ix_runs_recent``, the partial ``ix_task_runs_active``).

    The session must be scoped to ``tenant_id``.
    """
    jobs = (
        select(func.count())
        .select_from(Job)
        .where(col(Job.tenant_id) == tenant_id, col(Job.deleted_at).is_(None))
        .scalar_subquery()
    )
    runs = (
        select(func.count())
        .select_from(Run)
        .where(col(Run.tenant_id) == tenant_id, col(Run.created_at) >= since)
        .scalar_subquery()
    )
    running = (
        select(func.count())
        .select_from(TaskRun)
        .where(col(TaskRun.tenant_id) == tenant_id, col(TaskRun.status) == TaskStatus.running)
        .scalar_subquery()
    )
    row = (await session.execute(select(jobs, runs, running))).one()
    return TenantUsage(jobs=row[0], runs_last_24h=row[1], running_tasks=row[2])
