"""Queries on ``usage_daily`` (tenant-scoped)."""

from __future__ import annotations

from datetime import date

from sqlmodel import col

from backend.billing.models import UsageDay
from backend.core.repository import TenantScopedRepository


class UsageRepository(TenantScopedRepository[UsageDay]):
    model = UsageDay

    async def days(self, start: date, end: date) -> list[UsageDay]:
        """The tenant's rows from ``start`` up to (not including) ``end``, oldest first."""
        statement = (
            self.select()
            .where(
                col(UsageDay.day) >= start,
                col(UsageDay.day) < end,
            )
            .order_by(col(UsageDay.day))
        )
        return list((await self.session.exec(statement)).all())
