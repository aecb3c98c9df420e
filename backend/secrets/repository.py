"""Queries on secrets, always inside one tenant."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import col

from backend.core.repository import TenantScopedRepository
from backend.secrets.models import Secret


class SecretRepository(TenantScopedRepository[Secret]):
    model = Secret

    async def list_all(self) -> list[Secret]:
        statement = self.select().order_by(col(Secret.name))
        return list((await self.session.exec(statement)).all())

    async def by_names(self, names: Iterable[str]) -> list[Secret]:
        statement = self.select().where(col(Secret.name).in_(sorted(set(names))))
        return list((await self.session.exec(statement)).all())

    async def delete(self, secret: Secret) -> None:
        await self.session.delete(secret)
        await self.session.flush()
