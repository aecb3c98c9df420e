"""Queries on users (platform identities) and refresh tokens (tenant-scoped)."""

from __future__ import annotations

import uuid

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.models import utcnow
from backend.core.repository import TenantScopedRepository
from backend.users.models import RefreshToken, User


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def get_by_email(self, email: str) -> User | None:
        statement = select(User).where(User.email == email.strip().lower())
        return (await self.session.exec(statement)).first()

    async def add(self, user: User) -> User:
        self.session.add(user)
        await self.session.flush()
        return user


class RefreshTokenRepository(TenantScopedRepository[RefreshToken]):
    model = RefreshToken

    async def claim(self, token_id: uuid.UUID) -> bool:
        """Mark a token used; False if it was used or revoked already (a race or a reuse)."""
        statement = (
            update(RefreshToken)
            .where(
                col(RefreshToken.tenant_id) == self.tenant_id,
                col(RefreshToken.id) == token_id,
                col(RefreshToken.used_at).is_(None),
                col(RefreshToken.revoked_at).is_(None),
            )
            .values(used_at=utcnow())
            .returning(col(RefreshToken.id))
        )
        return (await self.session.execute(statement)).first() is not None

    async def revoke_family(self, family_id: uuid.UUID) -> None:
        await self._revoke(col(RefreshToken.family_id) == family_id)

    async def revoke_user(self, user_id: uuid.UUID) -> None:
        await self._revoke(col(RefreshToken.user_id) == user_id)

    async def _revoke(self, condition: object) -> None:
        statement = (
            update(RefreshToken)
            .where(
                col(RefreshToken.tenant_id) == self.tenant_id,
                condition,  # type: ignore[arg-type]
                col(RefreshToken.revoked_at).is_(None),
            )
            .values(revoked_at=utcnow())
        )
        await self.session.execute(statement)
