"""Queries on worker credentials, always inside one tenant."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import text
from sqlmodel import col, or_, update

from backend.core.models import utcnow
from backend.core.repository import TenantScopedRepository
from backend.workers.models import WorkerCredential


class WorkerCredentialRepository(TenantScopedRepository[WorkerCredential]):
    model = WorkerCredential

    async def list_all(self) -> list[WorkerCredential]:
        statement = self.select().order_by(col(WorkerCredential.created_at).desc())
        return list((await self.session.exec(statement)).all())

    async def active(self) -> list[WorkerCredential]:
        """Credentials that still work: not revoked, not expired."""
        statement = self.select().where(
            col(WorkerCredential.revoked_at).is_(None),
            or_(
                col(WorkerCredential.expires_at).is_(None),
                col(WorkerCredential.expires_at) > utcnow(),
            ),
        )
        return list((await self.session.exec(statement)).all())

    async def hosted_queues(self) -> frozenset[str]:
        """Queues the tenant serves with its own workers (an active credential exists)."""
        return frozenset(c.queue for c in await self.active())

    async def mark_redis_removed(self, ids: Iterable[uuid.UUID], at: datetime) -> None:
        """Record that these credentials' Redis users were deleted."""
        statement = (
            update(WorkerCredential)
            .where(
                col(WorkerCredential.tenant_id) == self.tenant_id,
                col(WorkerCredential.id).in_(list(ids)),
            )
            .values(redis_removed_at=at)
        )
        await self.session.execute(statement)


# Across tenants, for the engine's sweep (migration 0019): (tenant_id, id, redis_user).
WORKER_USERS_TO_REMOVE = text("SELECT * FROM worker_users_to_remove()")
