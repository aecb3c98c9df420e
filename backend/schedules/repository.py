"""Queries on schedules and their tick ledger, always inside one tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import col, select

from backend.core.repository import TenantScopedRepository
from backend.schedules.models import Schedule, ScheduleTick


class ScheduleRepository(TenantScopedRepository[Schedule]):
    model = Schedule

    async def due(self, now: datetime, limit: int = 500) -> list[Schedule]:
        """Schedules whose next instant has come, locked (other replicas skip them)."""
        statement = (
            self.select()
            .where(col(Schedule.paused).is_(False), col(Schedule.next_due_at) <= now)
            .order_by(col(Schedule.next_due_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.exec(statement)).all())

    async def earliest_due(self) -> datetime | None:
        statement = select(func.min(Schedule.next_due_at)).where(
            col(Schedule.tenant_id) == self.tenant_id, col(Schedule.paused).is_(False)
        )
        result: datetime | None = (await self.session.exec(statement)).one()
        return result

    async def claim(self, job_id: uuid.UUID, fence: int, values: dict[str, Any]) -> bool:
        """Write ``values`` unless a newer leaseholder (higher fence) wrote first."""
        statement = (
            update(Schedule)
            .where(
                col(Schedule.tenant_id) == self.tenant_id,
                col(Schedule.job_id) == job_id,
                col(Schedule.fence) <= fence,
            )
            .values(fence=fence, **values)
            .returning(col(Schedule.job_id))
        )
        return (await self.session.execute(statement)).first() is not None

    async def for_jobs(self, job_ids: Sequence[uuid.UUID]) -> list[Schedule]:
        """The schedules of these jobs (a job without one has no row)."""
        if not job_ids:
            return []
        statement = self.select().where(col(Schedule.job_id).in_(list(job_ids)))
        return list((await self.session.exec(statement)).all())


class TickRepository(TenantScopedRepository[ScheduleTick]):
    model = ScheduleTick

    async def record(self, rows: Sequence[dict[str, Any]]) -> set[datetime]:
        """Insert ticks; an instant already in the ledger (another replica, a restart) is
        left alone. Returns the instants this call recorded."""
        if not rows:
            return set()
        statement = (
            pg_insert(ScheduleTick)
            .on_conflict_do_nothing(index_elements=["tenant_id", "job_id", "scheduled_for"])
            .returning(col(ScheduleTick.scheduled_for))
        )
        result = await self.session.execute(statement, list(rows))
        return {row[0] for row in result.all()}

    async def set_run(self, job_id: uuid.UUID, at: datetime, run_id: uuid.UUID) -> None:
        await self._update(job_id, at, run_id=run_id)

    async def mark(self, job_id: uuid.UUID, at: datetime, outcome: str, reason: str) -> None:
        await self._update(job_id, at, outcome=outcome, reason=reason)

    async def _update(self, job_id: uuid.UUID, at: datetime, **values: Any) -> None:
        """Set ``values`` on the tick of ``job_id`` due at ``at``."""
        await self.session.execute(
            update(ScheduleTick)
            .where(
                col(ScheduleTick.tenant_id) == self.tenant_id,
                col(ScheduleTick.job_id) == job_id,
                col(ScheduleTick.scheduled_for) == at,
            )
            .values(**values)
        )

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
