"""Queries on a tenant's job templates."""

from __future__ import annotations

from sqlmodel import col

from backend.core.repository import TenantScopedRepository
from backend.templates.models import JobTemplate

UNIQUE_NAME_INDEX = "ux_job_templates_name"


class TemplateRepository(TenantScopedRepository[JobTemplate]):
    model = JobTemplate

    async def all(self) -> list[JobTemplate]:
        statement = self.select().order_by(col(JobTemplate.name))
        return list((await self.session.exec(statement)).all())
