"""Queries on notification channels, rules and deliveries, always inside one tenant."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import or_
from sqlmodel import col

from backend.core.repository import TenantScopedRepository
from backend.notify.models import (
    NotificationChannel,
    NotificationDelivery,
    NotificationRule,
    SlaMiss,
)


class ChannelRepository(TenantScopedRepository[NotificationChannel]):
    model = NotificationChannel

    async def list_all(self) -> list[NotificationChannel]:
        statement = self.select().order_by(col(NotificationChannel.created_at))
        return list((await self.session.exec(statement)).all())


class RuleRepository(TenantScopedRepository[NotificationRule]):
    model = NotificationRule

    async def list_all(self) -> list[NotificationRule]:
        statement = self.select().order_by(col(NotificationRule.created_at))
        return list((await self.session.exec(statement)).all())

    async def for_job(self, job_id: uuid.UUID) -> list[NotificationRule]:
        """Rules of this job and the tenant-wide ones."""
        return (await self.for_jobs({job_id}))[job_id]

    async def for_jobs(self, job_ids: set[uuid.UUID]) -> dict[uuid.UUID, list[NotificationRule]]:
        """Each job's rules and the tenant-wide ones, in one query (a batch of finished
        runs of a few jobs asks once, not once a run)."""
        statement = self.select().where(
            or_(col(NotificationRule.job_id).in_(job_ids), col(NotificationRule.job_id).is_(None))
        )
        rules = list((await self.session.exec(statement)).all())
        return {
            job_id: [rule for rule in rules if rule.job_id in (job_id, None)] for job_id in job_ids
        }


class DeliveryRepository(TenantScopedRepository[NotificationDelivery]):
    model = NotificationDelivery

    async def recent(
        self, *, channel_id: uuid.UUID | None = None, limit: int = 50
    ) -> list[NotificationDelivery]:
        statement = self.select()
        if channel_id is not None:
            statement = statement.where(col(NotificationDelivery.channel_id) == channel_id)
        statement = statement.order_by(col(NotificationDelivery.id).desc()).limit(limit)
        return list((await self.session.exec(statement)).all())

    async def sent_lately(
        self, channel_id: uuid.UUID, job_id: uuid.UUID, event: str, since: datetime
    ) -> bool:
        """Whether a notification of this kind (not throttled) was queued since ``since``."""
        statement = self.select().where(
            col(NotificationDelivery.channel_id) == channel_id,
            col(NotificationDelivery.job_id) == job_id,
            col(NotificationDelivery.event) == event,
            col(NotificationDelivery.status) != "throttled",
            col(NotificationDelivery.created_at) >= since,
        )
        return (await self.session.exec(statement.limit(1))).first() is not None

    async def due(self, now: datetime, limit: int) -> list[NotificationDelivery]:
        """Pending notifications due by ``now``, oldest first, locked (others skip them)."""
        statement = (
            self.select()
            .where(
                col(NotificationDelivery.status) == "pending",
                col(NotificationDelivery.next_at) <= now,
            )
            .order_by(col(NotificationDelivery.next_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.exec(statement)).all())


class SlaMissRepository(TenantScopedRepository[SlaMiss]):
    model = SlaMiss

    async def for_run(self, run_id: uuid.UUID) -> SlaMiss | None:
        """The run's SLA miss, if it missed (recorded once per run)."""
        statement = self.select().where(col(SlaMiss.run_id) == run_id)
        return (await self.session.exec(statement)).first()
