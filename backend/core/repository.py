"""The one place the tenant scope is applied to queries.

Every repository of a tenant-owned table derives from :class:`TenantScopedRepository`, whose
``select()`` already carries ``WHERE tenant_id = :tenant``. Row-level security is the
second wall: a query that bypassed this class would still see only the tenant that the
transaction was scoped to with ``backend.core.db.scope_to_tenant``.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Generic, TypeVar

from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

ModelT = TypeVar("ModelT", bound=SQLModel)


class TenantScopedRepository(Generic[ModelT]):
    model: ClassVar[type[Any]]

    def __init__(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def select(self) -> SelectOfScalar[ModelT]:
        return select(self.model).where(col(self.model.tenant_id) == self.tenant_id)

    async def get(self, **keys: Any) -> ModelT | None:
        statement = self.select()
        for name, value in keys.items():
            statement = statement.where(col(getattr(self.model, name)) == value)
        result: ModelT | None = (await self.session.exec(statement)).first()
        return result

    async def add(self, obj: ModelT) -> ModelT:
        if getattr(obj, "tenant_id", None) != self.tenant_id:
            raise ValueError("object belongs to another tenant")
        self.session.add(obj)
        await self.session.flush()
        return obj
