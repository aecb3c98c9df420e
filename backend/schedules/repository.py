"""Queries on schedules and their tick ledger, always inside one tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.repository import TenantScopedRepository
from backend.schedules.models import Schedule, ScheduleTick


class ScheduleRepository(TenantScopedRepository[Schedule]):
    model = Schedule

    async def for_jobs(self, job_ids: Sequence[uuid.UUID]) -> list[Schedule]:
        """The schedules of these jobs (a job without one has no row)."""
        if not job_ids:
            return []
        statement = self.select().where(col(Schedule.job_id).in_(list(job_ids)))
        return list((await self.session.exec(statement)).all())


class TickRepository(TenantScopedRepository[ScheduleTick]):
    model = ScheduleTick

    async def page(
        self, job_id: uuid.UUID, *, limit: int, before: datetime | None, outcome: str | None
    ) -> list[ScheduleTick]:
        statement = self.select().where(col(ScheduleTick.job_id) == job_id)
        if before is not None:
            statement = statement.where(col(ScheduleTick.scheduled_for) < before)
        if outcome is not None:
            statement = statement.where(col(ScheduleTick.outcome) == outcome)
        statement = statement.order_by(col(ScheduleTick.scheduled_for).desc()).limit(limit)
        return list((await self.session.exec(statement)).all())


# The fire prepared ahead for a schedule (its instant and run), the schedule's row locked:
# a scheduler handing it over holds that lock too, so an edit and a hand-over take turns.
_PREPARED = text(
    """
SELECT s.planned_for, k.run_id
FROM schedules s
LEFT JOIN schedule_ticks k
  ON k.tenant_id = s.tenant_id AND k.job_id = s.job_id AND k.scheduled_for = s.planned_for
 AND k.outcome = 'planned'
WHERE s.tenant_id = :tenant AND s.job_id = :job
FOR UPDATE OF s
"""
)

# A released fire's task runs, locked: admission locks the ones it claims, so the drop
# below waits for a claim under way and its next statement sees what the claim wrote.
_LOCK_TASKS = text(
    "SELECT id FROM task_runs WHERE tenant_id = :tenant AND run_id = :run FOR UPDATE"
)

# The prepared run is deleted while it has not fired: ``planned`` (handed over at the
# instant), or released (``queued``, admissible by the clock) while its instant is still
# to come and none of its tasks was dispatched. A released fire whose instant has passed
# stands: the tick stays ``planned`` and the next pass records it ``fired``.
_DROP_PREPARED = text(
    """
WITH run AS (
    DELETE FROM runs AS r
    WHERE r.tenant_id = :tenant AND r.id = :run
      AND (r.status = 'planned'
           OR (r.status = 'queued' AND r.run_at > clock_timestamp()
               AND NOT EXISTS (SELECT 1 FROM task_runs t
                               WHERE t.tenant_id = r.tenant_id AND t.run_id = r.id
                                 AND (t.dispatched_at IS NOT NULL
                                      OR t.started_at IS NOT NULL))))
    RETURNING r.id
), tick AS (
    UPDATE schedule_ticks SET outcome = 'superseded', reason = :why, run_id = NULL,
                              recorded_at = now()
    WHERE tenant_id = :tenant AND job_id = :job AND scheduled_for = :at
      AND outcome = 'planned'
      AND (CAST(:run AS uuid) IS NULL OR EXISTS (SELECT 1 FROM run))
    RETURNING 1
)
UPDATE schedules SET planned_for = NULL
WHERE tenant_id = :tenant AND job_id = :job
  AND (CAST(:run AS uuid) IS NULL OR EXISTS (SELECT 1 FROM run))
RETURNING (SELECT count(*) FROM run) AS dropped
"""
)

_PREPARED_JOBS = text(
    "SELECT job_id FROM schedules WHERE tenant_id = :tenant AND planned_for IS NOT NULL"
    " ORDER BY job_id"
)


async def drop_prepared_fire(
    session: AsyncSession, tenant_id: uuid.UUID, job_id: uuid.UUID, why: str
) -> bool:
    """Drop the fire prepared ahead for this schedule, if any and if it has not fired: its
    tick ``superseded`` (``why`` says by what), its run deleted, and the schedule free to
    prepare its next fire again from what it is now. Whether a prepared run was dropped.

    A released fire (admissible by the clock at its instant) whose instant has passed, or
    whose task was dispatched, has fired: it is left to the ledger as such."""
    found = (await session.execute(_PREPARED, {"tenant": tenant_id, "job": job_id})).one_or_none()
    if found is None or found.planned_for is None:
        return False
    if found.run_id is not None:
        await session.execute(_LOCK_TASKS, {"tenant": tenant_id, "run": found.run_id})
    dropped = (
        await session.execute(
            _DROP_PREPARED,
            {
                "tenant": tenant_id,
                "job": job_id,
                "at": found.planned_for,
                "run": found.run_id,
                "why": why,
            },
        )
    ).scalar_one_or_none()
    return bool(dropped)


async def drop_prepared_fires(session: AsyncSession, tenant_id: uuid.UUID, why: str) -> int:
    """:func:`drop_prepared_fire` for every schedule of the tenant (a suspension: a fire
    released ahead would otherwise run on resume, where the tenant's instants while
    suspended are ``skipped``). How many prepared runs were dropped."""
    jobs = (await session.execute(_PREPARED_JOBS, {"tenant": tenant_id})).scalars().all()
    dropped = 0
    for job_id in jobs:
        dropped += await drop_prepared_fire(session, tenant_id, job_id, why)
    return dropped
