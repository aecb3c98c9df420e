"""The newest run of each job, for the jobs page (a query of the runs domain, so the jobs
domain needs to know nothing about runs)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Uuid, column, true, values
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.principal import Principal
from backend.runs.models import Run


async def last_runs(
    session: AsyncSession, principal: Principal, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Run]:
    """The newest run of each of these jobs, by job id (a job never run has no entry):
    one index probe per job (a lateral join over ``ix_runs_job``), however many runs each
    job has."""
    if not job_ids:
        return {}
    tenant_id = principal.tenant_id
    listed = values(column("job_id", Uuid), name="listed").data([(i,) for i in job_ids])
    newest = (
        select(Run)
        .where(col(Run.tenant_id) == tenant_id, col(Run.job_id) == listed.c.job_id)
        .order_by(col(Run.created_at).desc(), col(Run.id).desc())
        .limit(1)
        .lateral("newest")
    )
    statement = select(aliased(Run, newest)).select_from(listed).join(newest, true())
    return {run.job_id: run for run in (await session.exec(statement)).all()}
