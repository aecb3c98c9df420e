"""Queries on worker credentials, always inside one tenant."""

from __future__ import annotations

from sqlmodel import col, or_

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
