"""Queries on jobs and their versions, always inside one tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, func, literal, or_, text, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from backend.core.repository import TenantScopedRepository
from backend.jobs.models import Job, JobVersion

# The partial unique index on (tenant_id, name) WHERE deleted_at IS NULL.
UNIQUE_NAME_INDEX = "ux_jobs_name"


class JobRepository(TenantScopedRepository[Job]):
    model = Job

    def active(self) -> SelectOfScalar[Job]:
        """Jobs of the tenant that are not deleted."""
        return self.select().where(col(Job.deleted_at).is_(None))

    async def get_active(self, job_id: uuid.UUID, *, lock: bool = False) -> Job | None:
        """A job that is not deleted; ``lock`` holds its row until the transaction ends."""
        statement = self.active().where(col(Job.id) == job_id)
        if lock:
            statement = statement.with_for_update()
        result: Job | None = (await self.session.exec(statement)).first()
        return result

    async def for_apply(self, names: Sequence[str], managed_by: str) -> list[Job]:
        """Active jobs named in ``names`` or owned by ``managed_by``, locked in name order
        (one order for every apply, so two concurrent applies cannot deadlock)."""
        statement = (
            self.active()
            .where(or_(col(Job.name).in_(list(names)), col(Job.managed_by) == managed_by))
            .order_by(col(Job.name))
            .with_for_update()
        )
        return list((await self.session.exec(statement)).all())

    async def count_scheduled(self) -> int:
        """Jobs (not deleted) whose current version has a schedule, paused or not."""
        statement = (
            select(func.count())
            .select_from(Job)
            .join(
                JobVersion,
                and_(
                    col(JobVersion.tenant_id) == col(Job.tenant_id),
                    col(JobVersion.job_id) == col(Job.id),
                    col(JobVersion.version) == col(Job.current_version),
                ),
            )
            .where(
                col(Job.tenant_id) == self.tenant_id,
                col(Job.deleted_at).is_(None),
                col(JobVersion.spec)["schedule"].is_not(None),
                col(JobVersion.spec)["schedule"] != literal("null", JSONB),
            )
        )
        return int((await self.session.exec(statement)).one())

    async def name_taken(self, name: str, *, except_id: uuid.UUID | None = None) -> bool:
        statement = self.active().where(col(Job.name) == name)
        if except_id is not None:
            statement = statement.where(col(Job.id) != except_id)
        return (await self.session.exec(statement)).first() is not None

    async def get_with_current(self, job_id: uuid.UUID) -> tuple[Job, JobVersion] | None:
        """An active job and its current version, in one query."""
        rows = await self._with_current(limit=1, job_id=job_id)
        return rows[0] if rows else None

    async def page(
        self,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None = None,
        name_prefix: str | None = None,
    ) -> list[tuple[Job, JobVersion]]:
        """Active jobs with their current version, newest first, after the
        ``(created_at, id)`` of the previous page's last job (``id`` breaks ties)."""
        return await self._with_current(limit=limit, after=after, name_prefix=name_prefix)

    async def _with_current(
        self,
        *,
        limit: int,
        job_id: uuid.UUID | None = None,
        after: tuple[datetime, uuid.UUID] | None = None,
        name_prefix: str | None = None,
    ) -> list[tuple[Job, JobVersion]]:
        statement = (
            select(Job, JobVersion)
            .join(
                JobVersion,
                and_(
                    col(JobVersion.tenant_id) == col(Job.tenant_id),
                    col(JobVersion.job_id) == col(Job.id),
                    col(JobVersion.version) == col(Job.current_version),
                ),
            )
            .where(col(Job.tenant_id) == self.tenant_id, col(Job.deleted_at).is_(None))
        )
        if job_id is not None:
            statement = statement.where(col(Job.id) == job_id)
        if name_prefix:
            statement = statement.where(col(Job.name).startswith(name_prefix, autoescape=True))
        if after is not None:
            statement = statement.where(tuple_(col(Job.created_at), col(Job.id)) < tuple_(*after))
        statement = statement.order_by(col(Job.created_at).desc(), col(Job.id).desc()).limit(limit)
        return [(job, version) for job, version in (await self.session.exec(statement)).all()]


_EDGES = (
    "SELECT j.id, j.name, v.spec -> 'triggers' FROM jobs j JOIN job_versions v "
    "ON v.tenant_id = j.tenant_id AND v.job_id = j.id AND v.version = j.current_version "
    "WHERE j.tenant_id = :tenant AND j.deleted_at IS NULL AND "
)
_TRIGGER_EDGES = text(_EDGES + "v.spec ? 'triggers' AND CAST(:up AS text) IS NULL")
_TRIGGER_EDGES_FROM = text(
    _EDGES
    + "v.spec -> 'triggers' @> jsonb_build_array(jsonb_build_object('job', CAST(:up AS text)))"
)


class TriggerEdge:
    """A job (``job_id``, ``name``) that its current spec starts after runs of ``upstream``."""

    __slots__ = ("job_id", "name", "statuses", "upstream")

    def __init__(self, job_id: uuid.UUID, name: str, upstream: str, statuses: list[str]) -> None:
        self.job_id, self.name, self.upstream, self.statuses = job_id, name, upstream, statuses


async def trigger_edges(
    session: AsyncSession, tenant_id: uuid.UUID, *, upstream: str | None = None
) -> list[TriggerEdge]:
    """The ``triggers`` of the tenant's active jobs' current specs (only those naming
    ``upstream`` when given)."""
    rows = await session.execute(
        _TRIGGER_EDGES if upstream is None else _TRIGGER_EDGES_FROM,
        {"tenant": tenant_id, "up": upstream},
    )
    edges = []
    for job_id, name, triggers in rows:
        for trigger in triggers or []:
            if upstream is None or trigger.get("job") == upstream:
                edges.append(TriggerEdge(job_id, name, trigger["job"], list(trigger["status"])))
    return edges


class JobVersionRepository(TenantScopedRepository[JobVersion]):
    model = JobVersion

    async def page(
        self, job_id: uuid.UUID, *, limit: int, before: int | None = None
    ) -> list[JobVersion]:
        """A job's versions, newest first, older than version ``before``."""
        statement = self.select().where(col(JobVersion.job_id) == job_id)
        if before is not None:
            statement = statement.where(col(JobVersion.version) < before)
        statement = statement.order_by(col(JobVersion.version).desc()).limit(limit)
        return list((await self.session.exec(statement)).all())
