"""Jobs: create, list, read, replace (a new immutable version), soft-delete; versions.

Rules: a job's name is unique among the tenant's jobs that are not deleted (deleting one
frees its name). Every change of the spec is a new version ``n + 1``; replacing a job with
an identical spec changes nothing. Runs pin a version, so versions are never edited or
removed while the job exists. Each change writes one audit event (``job.created``,
``job.updated``, ``job.deleted``) in the same transaction.
"""

from __future__ import annotations

import uuid

import networkx as nx
from redis.asyncio import Redis
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit import service as audit
from backend.core.cursor import decode_position, encode_position
from backend.core.errors import Conflict, NotFound, ValidationFailed
from backend.core.models import utcnow
from backend.core.principal import Principal
from backend.jobs.graph import build_graph
from backend.jobs.hooks import job_schedule_changed, jobs_created
from backend.jobs.models import Job, JobVersion
from backend.jobs.repository import (
    UNIQUE_NAME_INDEX,
    JobRepository,
    JobVersionRepository,
    trigger_edges,
)
from backend.jobs.schemas import JobGraph, JobPublic
from backend.jobs.spec import JobSpec, stored_form
from backend.plans.service import Limits, require

DEFAULT_PAGE_SIZE = 50


def _name_conflict(name: str) -> Conflict:
    return Conflict(
        f"A job named {name!r} exists already",
        details=[{"loc": ["name"], "msg": "name already in use", "type": "conflict"}],
    )


async def _flush_unique_name(session: AsyncSession, name: str) -> None:
    """Flush; a concurrent job that took the name first is a 409, not a 500."""
    try:
        await session.flush()
    except IntegrityError as error:
        if UNIQUE_NAME_INDEX in str(error.orig):
            raise _name_conflict(name) from error
        raise


async def _check_scheduled_jobs(jobs: JobRepository, principal: Principal) -> None:
    """Refuse (402 ``quota_exceeded``) one more scheduled job past the plan's limit."""
    limits = Limits.of_principal(principal)
    if limits.of("scheduled_jobs") is None:
        return
    require(
        limits,
        "scheduled_jobs",
        usage=await jobs.count_scheduled(),
        resets_at=None,
        tenant_id=principal.tenant_id,
    )


async def _check_triggers(
    session: AsyncSession,
    jobs: JobRepository,
    spec: JobSpec,
    *,
    job_id: uuid.UUID | None = None,
) -> None:
    """Refuse (422) triggers naming a job the tenant does not have, or that close a cycle
    (A starts B starts ... starts A) with the triggers of the tenant's other jobs."""
    if not spec.triggers:
        return
    problems = []
    for index, trigger in enumerate(spec.triggers):
        if not await jobs.name_taken(trigger.job):
            loc: list[str | int] = ["triggers", index, "job"]
            problems.append({"loc": loc, "msg": f"no job {trigger.job}", "type": "unknown_job"})
    if problems:
        raise ValidationFailed("A trigger names a job that does not exist", details=problems)
    graph: nx.DiGraph = nx.DiGraph()  # edge: upstream -> the job it starts
    for edge in await trigger_edges(session, jobs.tenant_id):
        if edge.job_id != job_id:
            graph.add_edge(edge.upstream, edge.name)
    for trigger in spec.triggers:
        graph.add_edge(trigger.job, spec.name)
    try:
        cycle = nx.find_cycle(graph, source=spec.name)
    except nx.NetworkXNoCycle:
        return
    path = " -> ".join([cycle[0][0], *(target for _, target in cycle)])
    raise ValidationFailed(
        f"The triggers would make a cycle: {path}",
        details=[{"loc": ["triggers"], "msg": f"cycle {path}", "type": "trigger_cycle"}],
    )


async def create_job(
    session: AsyncSession, redis: Redis, principal: Principal, spec: JobSpec
) -> JobPublic:
    """Create a job with ``spec`` as its version 1 (and its schedule, if it has one)."""
    jobs = JobRepository(session, principal.tenant_id)
    if await jobs.name_taken(spec.name):
        raise _name_conflict(spec.name)
    if spec.schedule is not None:
        await _check_scheduled_jobs(jobs, principal)
    await _check_triggers(session, jobs, spec)
    now = utcnow()
    job = Job(
        tenant_id=principal.tenant_id,
        name=spec.name,
        description=spec.description,
        queue=spec.queue,
        concurrency_policy=spec.concurrency_policy,
        current_version=1,
        created_by=principal.user_id,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    await _flush_unique_name(session, spec.name)
    version = await JobVersionRepository(session, principal.tenant_id).add(
        JobVersion(
            tenant_id=principal.tenant_id,
            job_id=job.id,
            version=1,
            spec=stored_form(spec),
            created_by=principal.user_id,
            created_at=now,
        )
    )
    await audit.record_for(
        session,
        principal,
        "job.created",
        target_type="job",
        target_id=job.id,
        details={"name": job.name, "version": 1},
    )
    await job_schedule_changed.fire(
        session, redis, principal.tenant_id, job.id, 1, version.spec.get("schedule")
    )
    return JobPublic.build(job, version)


async def create_jobs(
    session: AsyncSession,
    redis: Redis,
    principal: Principal,
    specs: list[JobSpec],
    *,
    managed_by: str | None = None,
) -> list[Job]:
    """Create many jobs at once (a GitOps apply, a seed): the rules of :func:`create_job`
    (a taken name is a 409, the plan's scheduled-jobs limit, one ``job.created`` event
    each) in a few statements for all of them, not several per job."""
    if not specs:
        return []
    jobs_repo = JobRepository(session, principal.tenant_id)
    scheduled = sum(1 for spec in specs if spec.schedule is not None)
    limits = Limits.of_principal(principal)
    if scheduled and limits.of("scheduled_jobs") is not None:
        require(
            limits,
            "scheduled_jobs",
            usage=await jobs_repo.count_scheduled(),
            adding=scheduled,
            resets_at=None,
            tenant_id=principal.tenant_id,
        )
    now = utcnow()
    jobs: list[Job] = []
    versions: list[dict[str, object]] = []
    events: list[dict[str, object]] = []
    schedules: list[tuple[uuid.UUID, int, dict[str, object]]] = []
    for spec in specs:
        job = Job(
            tenant_id=principal.tenant_id,
            name=spec.name,
            description=spec.description,
            queue=spec.queue,
            concurrency_policy=spec.concurrency_policy,
            managed_by=managed_by,
            current_version=1,
            created_by=principal.user_id,
            created_at=now,
            updated_at=now,
        )
        stored = stored_form(spec)
        jobs.append(job)
        versions.append(
            {
                "tenant_id": principal.tenant_id,
                "job_id": job.id,
                "version": 1,
                "spec": stored,
                "created_by": principal.user_id,
                "created_at": now,
            }
        )
        events.append(
            audit.pending_row(
                tenant_id=principal.tenant_id,
                actor=principal.actor,
                origin=principal.origin,
                action="job.created",
                target_type="job",
                target_id=job.id,
                details={"name": job.name, "version": 1},
            )
        )
        if stored.get("schedule") is not None:
            schedules.append((job.id, 1, stored["schedule"]))
    try:
        await session.execute(
            insert(Job),
            [{c.name: getattr(job, c.name) for c in Job.__table__.columns} for job in jobs],  # type: ignore[attr-defined]
        )
    except IntegrityError as error:
        if UNIQUE_NAME_INDEX in str(error.orig):
            raise Conflict(
                "A job with one of these names was created meanwhile; nothing was applied"
            ) from error
        raise
    await session.execute(insert(JobVersion), versions)
    # Checked once every job is in (the transaction sees them): a trigger may name a job of
    # the same batch, and a cycle may run through several of them.
    for job, spec in zip(jobs, specs, strict=True):
        await _check_triggers(session, jobs_repo, spec, job_id=job.id)
    await audit.append_pending(session, principal.tenant_id, events)
    await jobs_created.fire(session, redis, principal.tenant_id, schedules)
    return jobs


async def list_jobs(
    session: AsyncSession,
    principal: Principal,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
    name: str | None = None,
) -> tuple[list[JobPublic], str | None]:
    """A page of the tenant's jobs, newest first, optionally only names starting with
    ``name``; and the cursor of the next page (``None`` on the last one)."""
    after = decode_position(cursor) if cursor is not None else None
    rows = await JobRepository(session, principal.tenant_id).page(
        limit=limit + 1, after=after, name_prefix=name
    )
    last = rows[limit - 1][0] if len(rows) > limit else None
    next_cursor = encode_position(last.created_at, last.id) if last else None
    return [JobPublic.build(job, version) for job, version in rows[:limit]], next_cursor


async def get_job(session: AsyncSession, principal: Principal, job_id: uuid.UUID) -> JobPublic:
    """One job with its current spec; 404 when missing, deleted or another tenant's."""
    row = await JobRepository(session, principal.tenant_id).get_with_current(job_id)
    if row is None:
        raise NotFound("Job not found")
    return JobPublic.build(*row)


async def update_job(
    session: AsyncSession, redis: Redis, principal: Principal, job_id: uuid.UUID, spec: JobSpec
) -> JobPublic:
    """Replace a job's spec: a new version ``n + 1``, or nothing when the spec is identical.

    The job row is locked first, so concurrent replacements get consecutive versions.
    """
    jobs = JobRepository(session, principal.tenant_id)
    job = await jobs.get_active(job_id, lock=True)
    if job is None:
        raise NotFound("Job not found")
    versions = JobVersionRepository(session, principal.tenant_id)
    current = await versions.get(job_id=job.id, version=job.current_version)
    new_spec = stored_form(spec)
    if current is not None and current.spec == new_spec:
        return JobPublic.build(job, current)
    if new_spec.get("schedule") is not None and (
        current is None or not current.spec.get("schedule")
    ):
        await _check_scheduled_jobs(jobs, principal)
    previous_name = job.name
    if spec.name != previous_name and await jobs.name_taken(spec.name, except_id=job.id):
        raise _name_conflict(spec.name)
    await _check_triggers(session, jobs, spec, job_id=job.id)
    now = utcnow()
    job.name = spec.name
    job.description = spec.description
    job.queue = spec.queue
    job.concurrency_policy = spec.concurrency_policy
    job.current_version += 1
    job.updated_at = now
    session.add(job)
    await _flush_unique_name(session, spec.name)
    version = await versions.add(
        JobVersion(
            tenant_id=principal.tenant_id,
            job_id=job.id,
            version=job.current_version,
            spec=new_spec,
            created_by=principal.user_id,
            created_at=now,
        )
    )
    details: dict[str, object] = {"version": job.current_version}
    if previous_name != job.name:
        details["renamed_from"] = previous_name
    await audit.record_for(
        session, principal, "job.updated", target_type="job", target_id=job.id, details=details
    )
    await job_schedule_changed.fire(
        session, redis, principal.tenant_id, job.id, job.current_version, new_spec.get("schedule")
    )
    return JobPublic.build(job, version)


async def delete_job(
    session: AsyncSession, redis: Redis, principal: Principal, job_id: uuid.UUID
) -> None:
    """Soft-delete a job: it disappears from the API and its name is free again; its
    versions stay for the runs that pinned them. A second delete is a 404."""
    job = await JobRepository(session, principal.tenant_id).get_active(job_id, lock=True)
    if job is None:
        raise NotFound("Job not found")
    job.deleted_at = utcnow()
    session.add(job)
    await session.flush()
    await job_schedule_changed.fire(
        session, redis, principal.tenant_id, job.id, job.current_version, None
    )
    await audit.record_for(
        session,
        principal,
        "job.deleted",
        target_type="job",
        target_id=job.id,
        details={"name": job.name, "version": job.current_version},
    )


async def list_versions(
    session: AsyncSession,
    principal: Principal,
    job_id: uuid.UUID,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: int | None = None,
) -> tuple[list[JobVersion], int | None]:
    """A page of a job's versions, newest first, older than version ``cursor``; and the
    cursor of the next page. 404 when the job is missing, deleted or another tenant's."""
    if await JobRepository(session, principal.tenant_id).get_active(job_id) is None:
        raise NotFound("Job not found")
    versions = await JobVersionRepository(session, principal.tenant_id).page(
        job_id, limit=limit + 1, before=cursor
    )
    next_cursor = versions[limit - 1].version if len(versions) > limit else None
    return versions[:limit], next_cursor


async def get_version(
    session: AsyncSession, tenant_id: uuid.UUID, job_id: uuid.UUID, version: int | None = None
) -> JobVersion:
    """One version of a job, for the run engine (``JobSpec.model_validate(v.spec)`` reads it).

    ``version=None`` is the current version of a job that is not deleted; an explicit
    version is found even after the job was deleted (runs pinned it). The session must be
    scoped to ``tenant_id`` (``backend.core.db.scope_to_tenant``): row-level security.
    """
    if version is None:
        job = await JobRepository(session, tenant_id).get_active(job_id)
        if job is None:
            raise NotFound("Job not found")
        version = job.current_version
    found = await JobVersionRepository(session, tenant_id).get(job_id=job_id, version=version)
    if found is None:
        raise NotFound("Job version not found")
    return found


async def get_graph(session: AsyncSession, principal: Principal, job_id: uuid.UUID) -> JobGraph:
    """The current version's DAG; 404 when the job is missing, deleted or another tenant's."""
    job = await get_job(session, principal, job_id)
    return build_graph(job.id, job.current_version, JobSpec.model_validate(job.spec))
