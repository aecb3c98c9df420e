"""Queries on tenants (platform table) and memberships (tenant-scoped)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.db import driver_connection
from backend.core.repository import TenantScopedRepository
from backend.tenants.models import Membership, Tenant
from backend.users.models import User


@dataclass(frozen=True, slots=True)
class CallerFacts:
    """What authenticating a request needs of its caller: plain values, no ORM objects."""

    user_id: uuid.UUID
    email: str
    is_superuser: bool
    email_verified: bool
    role: str
    tenant_status: str
    plan: str


# Built once: every authenticated request runs it, and a statement built per call costs
# its construction and cache key each time.
# What authentication needs of a caller: one statement, sent raw on the request's
# transaction (core.db.driver_connection): on every authenticated request, SQLAlchemy's
# statement machinery cost more than the round trip.
_CALLER_FACTS = """
SELECT u.id, u.email, u.is_superuser, u.email_verified_at IS NOT NULL, m.role, t.status, t.plan
  FROM memberships m
  JOIN users u ON u.id = m.user_id
  JOIN tenants t ON t.id = m.tenant_id
 WHERE m.tenant_id = $1 AND m.user_id = $2
"""


class TenantDirectory:
    """The platform-wide list of tenants. Not tenant-owned: no row-level security."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, tenant_id: uuid.UUID) -> Tenant | None:
        return await self.session.get(Tenant, tenant_id)

    async def lock(self, tenant_id: uuid.UUID) -> Tenant | None:
        """The tenant row, locked until the transaction ends: state changes queue up."""
        statement = (
            select(Tenant)
            .where(col(Tenant.id) == tenant_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.exec(statement)).first()

    async def get_many(self, tenant_ids: set[uuid.UUID]) -> dict[uuid.UUID, Tenant]:
        statement = select(Tenant).where(col(Tenant.id).in_(list(tenant_ids)))
        return {t.id: t for t in (await self.session.exec(statement)).all()}

    async def get_by_slug(self, slug: str) -> Tenant | None:
        return (await self.session.exec(select(Tenant).where(Tenant.slug == slug))).first()

    async def add(self, tenant: Tenant) -> Tenant:
        self.session.add(tenant)
        await self.session.flush()
        return tenant

    async def all(self) -> list[Tenant]:
        return list((await self.session.exec(select(Tenant).order_by(col(Tenant.slug)))).all())

    async def page(self, *, limit: int, after: tuple[datetime, uuid.UUID] | None) -> list[Tenant]:
        """Tenants newest first, after the ``(created_at, id)`` of the previous page's last
        row; ``id`` breaks ties, so tenants created at the same instant are not skipped."""
        statement = select(Tenant)
        if after is not None:
            statement = statement.where(
                tuple_(col(Tenant.created_at), col(Tenant.id)) < tuple_(*after)
            )
        statement = statement.order_by(col(Tenant.created_at).desc(), col(Tenant.id).desc())
        return list((await self.session.exec(statement.limit(limit))).all())


class MembershipRepository(TenantScopedRepository[Membership]):
    model = Membership

    async def with_users(self) -> list[tuple[Membership, User]]:
        statement = (
            select(Membership, User)
            .join(User, col(User.id) == col(Membership.user_id))
            .where(col(Membership.tenant_id) == self.tenant_id)
            .order_by(col(Membership.created_at))
        )
        return [(m, u) for m, u in (await self.session.exec(statement)).all()]

    async def caller(self, user_id: uuid.UUID) -> tuple[Membership, User, Tenant] | None:
        """A member's membership, user row and tenant, in one query."""
        statement = (
            select(Membership, User, Tenant)
            .join(User, col(User.id) == col(Membership.user_id))
            .join(Tenant, col(Tenant.id) == col(Membership.tenant_id))
            .where(col(Membership.tenant_id) == self.tenant_id, col(Membership.user_id) == user_id)
        )
        row = (await self.session.exec(statement)).first()
        return (row[0], row[1], row[2]) if row else None

    async def caller_facts(self, user_id: uuid.UUID) -> CallerFacts | None:
        """:meth:`caller`'s answer as plain values (what authentication needs), one query."""
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(_CALLER_FACTS, self.tenant_id, user_id)
        if row is None:
            return None
        user_id, email, superuser, verified, role, status, plan = row
        return CallerFacts(user_id, email, superuser, verified, role, status, plan)

    async def count(self) -> int:
        """How many members the tenant has (its plan limits them)."""
        statement = (
            select(func.count())
            .select_from(Membership)
            .where(col(Membership.tenant_id) == self.tenant_id)
        )
        return int((await self.session.exec(statement)).one())

    async def lock_and_count_role(self, role: str) -> int:
        """Count members with ``role``, locking those rows until the transaction ends
        (two concurrent demotions cannot both see a second owner)."""
        statement = self.select().where(col(Membership.role) == role).with_for_update()
        return len((await self.session.exec(statement)).all())

    async def delete(self, membership: Membership) -> None:
        await self.session.delete(membership)
        await self.session.flush()


async def memberships_of_user(
    session: AsyncSession, user_id: uuid.UUID
) -> list[tuple[Membership, Tenant]]:
    """Every tenant the user belongs to. Needs ``scope_to_user`` on the transaction."""
    statement = (
        select(Membership, Tenant)
        .join(Tenant, col(Tenant.id) == col(Membership.tenant_id))
        .where(col(Membership.user_id) == user_id)
        .order_by(col(Tenant.slug))
    )
    return [(m, t) for m, t in (await session.exec(statement)).all()]
