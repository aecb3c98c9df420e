"""Queries on schedules and their tick ledger, always inside one tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func
from sqlmodel import col, select

from backend.core.repository import TenantScopedRepository
from backend.schedules.models import Schedule, ScheduleTick


class ScheduleRepository(TenantScopedRepository[Schedule]):
    model = Schedule

    async def earliest_due(self) -> datetime | None:
        statement = select(func.min(Schedule.next_due_at)).where(
            col(Schedule.tenant_id) == self.tenant_id, col(Schedule.paused).is_(False)
        )
        result: datetime | None = (await self.session.exec(statement)).one()
        return result

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
