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

_DROP_PREPARED = text(
    """
WITH tick AS (
    UPDATE schedule_ticks SET outcome = 'superseded', reason = :why, run_id = NULL,
                              recorded_at = now()
    WHERE tenant_id = :tenant AND job_id = :job AND scheduled_for = :at
      AND outcome = 'planned'
), run AS (
    DELETE FROM runs WHERE tenant_id = :tenant AND id = :run AND status = 'planned'
)
UPDATE schedules SET planned_for = NULL WHERE tenant_id = :tenant AND job_id = :job
"""
)


async def drop_prepared_fire(
    session: AsyncSession, tenant_id: uuid.UUID, job_id: uuid.UUID, why: str
) -> bool:
    """Drop the fire prepared ahead for this schedule, if any: its tick ``superseded``
    (``why`` says by what), its run deleted, and the schedule free to prepare its next fire
    again from what it is now. Whether there was a prepared run."""
    found = (await session.execute(_PREPARED, {"tenant": tenant_id, "job": job_id})).one_or_none()
    if found is None or found.planned_for is None:
        return False
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
    return found.run_id is not None
