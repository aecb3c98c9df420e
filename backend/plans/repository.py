"""Queries on ``plans`` (a platform table: no tenant scope, no row-level security)."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.plans.models import PlanRow


class PlanRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, name: str) -> PlanRow | None:
        return await self.session.get(PlanRow, name)

    async def get_many(self, names: set[str]) -> dict[str, PlanRow]:
        statement = select(PlanRow).where(col(PlanRow.name).in_(list(names)))
        return {row.name: row for row in (await self.session.exec(statement)).all()}

    async def all(self) -> list[PlanRow]:
        statement = select(PlanRow).order_by(col(PlanRow.position), col(PlanRow.name))
        return list((await self.session.exec(statement)).all())

    async def save(self, row: PlanRow) -> PlanRow:
        self.session.add(row)
        await self.session.flush()
        return row
