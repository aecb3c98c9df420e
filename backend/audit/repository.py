"""Queries on the audit log, always inside one tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy import func, text
from sqlmodel import col, select

from backend.audit.models import AuditEvent
from backend.core.repository import TenantScopedRepository


class AuditRepository(TenantScopedRepository[AuditEvent]):
    model = AuditEvent

    async def lock_chain(self) -> None:
        """Serialise appends to this tenant's chain until the transaction ends."""
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended('audit:' || :tenant, 0))"),
            {"tenant": str(self.tenant_id)},
        )

    async def chain_head(self) -> tuple[int, str] | None:
        statement = (
            select(AuditEvent.seq, AuditEvent.hash)
            .where(col(AuditEvent.tenant_id) == self.tenant_id)
            .order_by(col(AuditEvent.seq).desc())
            .limit(1)
        )
        row = (await self.session.exec(statement)).first()
        return (int(row[0]), str(row[1])) if row else None

    async def page(
        self,
        *,
        limit: int,
        before_seq: int | None = None,
        action: str | None = None,
        actor: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEvent]:
        statement = self.select()
        if before_seq is not None:
            statement = statement.where(col(AuditEvent.seq) < before_seq)
        if action:
            statement = statement.where(
                (col(AuditEvent.action) == action)
                | col(AuditEvent.action).startswith(action + ".", autoescape=True)
            )
        if actor:
            statement = statement.where(
                (col(AuditEvent.actor_id) == actor) | (col(AuditEvent.actor_label) == actor.lower())
            )
        if outcome:
            statement = statement.where(col(AuditEvent.outcome) == outcome)
        if since:
            statement = statement.where(col(AuditEvent.occurred_at) >= since)
        if until:
            statement = statement.where(col(AuditEvent.occurred_at) < until)
        statement = statement.order_by(col(AuditEvent.seq).desc()).limit(limit)
        return list((await self.session.exec(statement)).all())

    async def iterate_chain(self, batch: int = 1000, after: int = 0) -> AsyncIterator[AuditEvent]:
        last = after
        while True:
            statement = (
                self.select()
                .where(col(AuditEvent.seq) > last)
                .order_by(col(AuditEvent.seq))
                .limit(batch)
            )
            rows = list((await self.session.exec(statement)).all())
            for row in rows:
                yield row
            if len(rows) < batch:
                return
            last = rows[-1].seq

    async def count(self) -> int:
        statement = (
            select(func.count())
            .select_from(AuditEvent)
            .where(col(AuditEvent.tenant_id) == self.tenant_id)
        )
        return int((await self.session.exec(statement)).one())
