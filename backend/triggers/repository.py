"""Queries on webhook endpoints and deliveries, always inside one tenant."""

from __future__ import annotations

import uuid

from sqlmodel import col

from backend.core.repository import TenantScopedRepository
from backend.triggers.models import WebhookDelivery, WebhookEndpoint


class WebhookRepository(TenantScopedRepository[WebhookEndpoint]):
    model = WebhookEndpoint

    async def for_job(self, job_id: uuid.UUID) -> list[WebhookEndpoint]:
        statement = (
            self.select()
            .where(col(WebhookEndpoint.job_id) == job_id)
            .order_by(col(WebhookEndpoint.created_at))
        )
        return list((await self.session.exec(statement)).all())

    async def delete(self, endpoint: WebhookEndpoint) -> None:
        await self.session.delete(endpoint)
        await self.session.flush()


class DeliveryRepository(TenantScopedRepository[WebhookDelivery]):
    model = WebhookDelivery

    async def recent(
        self,
        *,
        endpoint_id: uuid.UUID | None = None,
        job_id: uuid.UUID | None = None,
        limit: int = 50,
    ) -> list[WebhookDelivery]:
        statement = self.select()
        if endpoint_id is not None:
            statement = statement.where(col(WebhookDelivery.endpoint_id) == endpoint_id)
        if job_id is not None:
            statement = statement.where(col(WebhookDelivery.job_id) == job_id)
        statement = statement.order_by(col(WebhookDelivery.id).desc()).limit(limit)
        return list((await self.session.exec(statement)).all())
