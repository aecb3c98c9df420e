"""Queries on API tokens, always inside one tenant."""

from __future__ import annotations

import uuid

from sqlmodel import col, update

from backend.core.models import utcnow
from backend.core.repository import TenantScopedRepository
from backend.tokens.models import ApiToken


class ApiTokenRepository(TenantScopedRepository[ApiToken]):
    model = ApiToken

    async def list_all(self) -> list[ApiToken]:
        statement = self.select().order_by(col(ApiToken.created_at).desc())
        return list((await self.session.exec(statement)).all())

    async def revoke_created_by(self, user_id: uuid.UUID) -> None:
        statement = (
            update(ApiToken)
            .where(
                col(ApiToken.tenant_id) == self.tenant_id,
                col(ApiToken.created_by) == user_id,
                col(ApiToken.revoked_at).is_(None),
            )
            .values(revoked_at=utcnow())
        )
        await self.session.execute(statement)
