"""What happens after a run finishes, outside the transaction that finished it: job-to-job
triggers and notifications (``backend/notify``), whose sending and SLA checks run in this
loop too.

The engine's finishing step (and a cancel) fires ``runs_finished``; :func:`record_finished`
writes one outbox row per run in that transaction - no query, no network call on the hot
path. The :class:`Reactor` loop, beside the engine, takes a tenant's rows (``FOR UPDATE
SKIP LOCKED``, so several engine processes share the work), starts the jobs whose
``triggers`` name the finished run's job with the run's status, and deletes the rows, in
one transaction per batch. A batch's jobs, their notification rules and the trigger edges
naming them are read once for the batch (a batch is mostly runs of a few jobs), so a
finished run costs the reactor no statement of its own unless it has something to start
or notify. A tenant is looked at when this process wrote its rows (a kick) and, for rows
written by other processes, at every sweep.

A downstream run's idempotency key is ``upstream:<run id>``: a batch replayed after a crash
starts nothing twice. Its ``upstream`` param holds the upstream run's id, job name, status
and the outputs of its tasks.

Runs a plan limit refused before they existed (``runs_refused``: a scheduled fire past the
runs per month, a webhook delivery or a downstream run refused with ``quota_exceeded``) go
the same way: :func:`record_refused` writes one ``run_refusal_outbox`` row each in the
transaction that records the refusal, and :func:`react` queues their ``quota_cancelled``
notifications after that commit, deleting the rows in the same transaction (so a row is
notified once). A downstream run refused here writes its row in this loop's own
transaction; the next batch notifies it.

**What a finished run costs.** A kick names what was written (a finished run, a refusal),
and a pass looks only there: a tenant kicked for finished runs is not asked for refusals,
and its due notifications are sent only when the pass queued some (the sweep looks at
everything). A kick also waits ``REACT_DELAY_SECONDS`` before its pass, so the runs a busy
tenant finishes meanwhile are taken in one transaction: at 200 single-task runs a second
the reactor had cost a fifth of the engine process's CPU, three transactions a run.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import delete, insert, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.db import after_commit, tenant_transaction
from backend.core.errors import BatonError, QuotaExceeded
from backend.core.models import utcnow, uuid7
from backend.core.settings import Settings
from backend.jobs.models import Job
from backend.jobs.repository import TriggerEdge, trigger_edges
from backend.notify import service as notify
from backend.notify.repository import RuleRepository
from backend.notify.sla import check_slas
from backend.plans.service import Limits, cached_limits_of
from backend.runs.hooks import FinishedRun, RefusedRun, runs_refused
from backend.runs.repository import TaskRunRepository
from backend.runs.service import trigger_unattended
from backend.tenants.models import TenantStatus
from backend.tenants.repository import TenantDirectory
from backend.triggers.models import RunFinishOutbox, RunRefusalOutbox
from kernel.runtime.waits import wait_event

log = structlog.get_logger(__name__)

BATCH = 100
UPSTREAM_TRIGGER = "upstream"
# A kick waits this long before its pass: a downstream run or a notification starts at
# most this much later, and a tenant finishing runs fast costs one pass per window.
REACT_DELAY_SECONDS = 0.05

# What a kick says was written, so that a pass reads only that outbox.
FINISHED = "finished"
REFUSED = "refused"
EVERYTHING = frozenset({FINISHED, REFUSED})

_kicked: dict[uuid.UUID, set[str]] = {}
_wake = asyncio.Event()


def kick(tenant_id: uuid.UUID, what: str = FINISHED) -> None:
    """Have this process's reactor look at the tenant's ``what`` outbox soon."""
    _kicked.setdefault(tenant_id, set()).add(what)
    _wake.set()


async def record_finished(
    session: AsyncSession, tenant_id: uuid.UUID, runs: list[FinishedRun]
) -> None:
    """``runs_finished`` handler: one outbox row per run, in the finishing transaction."""
    if not runs:
        return
    await session.execute(
        insert(RunFinishOutbox),
        [
            {
                "tenant_id": tenant_id,
                "id": uuid7(),
                "run_id": run.run_id,
                "job_id": run.job_id,
                "status": run.status,
                "reason": run.reason[:300] if run.reason else None,
                "finished_at": run.finished_at,
            }
            for run in runs
        ],
    )

    async def wake() -> None:
        kick(tenant_id)

    after_commit(session, wake)


async def record_refused(
    session: AsyncSession, tenant_id: uuid.UUID, refused: list[RefusedRun]
) -> None:
    """``runs_refused`` handler: one outbox row per refusal, in the refusing transaction."""
    if not refused:
        return
    await session.execute(
        insert(RunRefusalOutbox),
        [
            {
                "tenant_id": tenant_id,
                "id": uuid7(),
                "job_id": item.job_id,
                "source": item.source,
                "limit_name": item.limit[:40] if item.limit else None,
                "reason": item.reason[:300],
                "refused_at": item.refused_at,
                "details": item.details,
            }
            for item in refused
        ],
    )

    async def wake() -> None:
        kick(tenant_id, REFUSED)

    after_commit(session, wake)


@dataclass
class Reaction:
    """What one batch did: outbox rows taken, notifications queued."""

    taken: int = 0
    queued: int = 0

    def __iadd__(self, other: Reaction) -> Reaction:
        self.taken += other.taken
        self.queued += other.queued
        return self


async def react(
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis,
    settings: Settings,
    tenant_id: uuid.UUID,
    what: Collection[str] = EVERYTHING,
) -> Reaction:
    """Consume up to one batch of each of the tenant's outboxes named in ``what`` (finished
    runs, then refused runs)."""
    done = Reaction()
    if FINISHED in what:
        done += await _react_finished(sessionmaker, redis, settings, tenant_id)
    if REFUSED in what:
        done += await _react_refused(sessionmaker, settings, tenant_id)
    return done


async def _react_refused(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, tenant_id: uuid.UUID
) -> Reaction:
    async with tenant_transaction(sessionmaker, tenant_id) as session:
        statement = (
            select(RunRefusalOutbox)
            .where(col(RunRefusalOutbox.tenant_id) == tenant_id)
            .order_by(col(RunRefusalOutbox.id))
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
        rows = list((await session.exec(statement)).all())
        if not rows:
            return Reaction()
        queued = 0
        jobs = await _jobs_by_id(session, tenant_id, {row.job_id for row in rows})
        rules = await RuleRepository(session, tenant_id).for_jobs(set(jobs))
        for row in rows:
            if row.job_id not in jobs:
                continue
            refusal = {
                "source": row.source,
                "limit": row.limit_name,
                "reason": row.reason,
                "refused_at": row.refused_at.isoformat(),
                **row.details,
            }
            queued += await notify.enqueue_for_refusal(
                session, settings, tenant_id, job_id=row.job_id, job_name=jobs[row.job_id].name,
                refusal=refusal, rules=rules[row.job_id],
            )  # fmt: skip
        await session.execute(
            delete(RunRefusalOutbox).where(
                col(RunRefusalOutbox.tenant_id) == tenant_id,
                col(RunRefusalOutbox.id).in_([row.id for row in rows]),
            )
        )
        return Reaction(taken=len(rows), queued=queued)


async def _jobs_by_id(
    session: AsyncSession, tenant_id: uuid.UUID, job_ids: set[uuid.UUID]
) -> dict[uuid.UUID, Job]:
    """The batch's jobs in one query (deleted ones included: their rows are still
    notified; they start nothing downstream)."""
    statement = select(Job).where(col(Job.tenant_id) == tenant_id, col(Job.id).in_(job_ids))
    return {job.id: job for job in (await session.exec(statement)).all()}


async def _react_finished(
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis,
    settings: Settings,
    tenant_id: uuid.UUID,
) -> Reaction:
    async with tenant_transaction(sessionmaker, tenant_id) as session:
        statement = (
            select(RunFinishOutbox)
            .where(col(RunFinishOutbox.tenant_id) == tenant_id)
            .order_by(col(RunFinishOutbox.id))
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
        rows = list((await session.exec(statement)).all())
        if not rows:
            return Reaction()
        queued = 0
        tenant = await TenantDirectory(session).get(tenant_id)
        if tenant is not None and tenant.status == TenantStatus.active:
            limits = await cached_limits_of(session, settings, tenant.plan)
            # Looked up once a batch, not once a run: a batch is mostly runs of few jobs.
            jobs = await _jobs_by_id(session, tenant_id, {row.job_id for row in rows})
            rules = await RuleRepository(session, tenant_id).for_jobs(set(jobs))
            edges: dict[str, list[TriggerEdge]] = {}
            for row in rows:
                job = jobs.get(row.job_id)
                if job is None:
                    continue
                if job.deleted_at is None and job.name not in edges:
                    edges[job.name] = await trigger_edges(session, tenant_id, upstream=job.name)
                await _start_downstream(session, redis, limits, row, job, edges.get(job.name, []))
                queued += await notify.enqueue_for_run(
                    session, settings, tenant_id, run_id=row.run_id, job_id=row.job_id,
                    job_name=job.name, status=row.status, reason=row.reason,
                    finished_at=row.finished_at, rules=rules[row.job_id],
                )  # fmt: skip
        await session.execute(
            delete(RunFinishOutbox).where(
                col(RunFinishOutbox.tenant_id) == tenant_id,
                col(RunFinishOutbox.id).in_([row.id for row in rows]),
            )
        )
        return Reaction(taken=len(rows), queued=queued)


async def check_tenant_slas(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, tenant_id: uuid.UUID
) -> int:
    """Record and notify the tenant's new SLA misses (one transaction)."""
    async with tenant_transaction(sessionmaker, tenant_id) as session:
        return await check_slas(session, settings, tenant_id)


async def send_notifications(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, tenant_id: uuid.UUID
) -> int:
    """Send the tenant's due notifications (one transaction); the number tried."""
    async with tenant_transaction(sessionmaker, tenant_id) as session:
        return await notify.send_due(session, settings, tenant_id)


async def _start_downstream(
    session: AsyncSession,
    redis: Redis,
    limits: Limits,
    row: RunFinishOutbox,
    upstream: Job,
    downstream: list[TriggerEdge],
) -> None:
    """Start the jobs of ``downstream`` (the edges naming ``upstream``) whose statuses
    include the finished run's."""
    if upstream.deleted_at is not None:
        return
    edges = [edge for edge in downstream if row.status in edge.statuses]
    if not edges:
        return
    tasks = await TaskRunRepository(session, row.tenant_id).for_runs([row.run_id])
    params: dict[str, Any] = {
        "upstream": {
            "run_id": str(row.run_id),
            "job": upstream.name,
            "status": row.status,
            "outputs": {task.name: task.output for task in tasks if task.output is not None},
        }
    }
    for edge in edges:
        try:
            async with session.begin_nested():
                run, created = await trigger_unattended(
                    session,
                    redis,
                    row.tenant_id,
                    edge.job_id,
                    params=params,
                    idempotency_key=f"upstream:{row.run_id}",
                    trigger=UPSTREAM_TRIGGER,
                    limits=limits,
                )
        except BatonError as error:  # quota, concurrency policy, a job gone meanwhile
            log.warning("triggers.downstream_refused", tenant_id=str(row.tenant_id),
                        job_id=str(edge.job_id), upstream_run_id=str(row.run_id),
                        code=error.code, reason=error.message)  # fmt: skip
            if isinstance(error, QuotaExceeded):
                await runs_refused.fire(session, row.tenant_id, [_refused_downstream(
                    error, edge.job_id, row, upstream.name)])  # fmt: skip
            continue
        log.info("triggers.downstream_started", tenant_id=str(row.tenant_id),
                 job_id=str(edge.job_id), run_id=str(run.id),
                 upstream_run_id=str(row.run_id), created=created)  # fmt: skip


def _refused_downstream(
    error: QuotaExceeded, job_id: uuid.UUID, row: RunFinishOutbox, upstream: str
) -> RefusedRun:
    details = error.details if isinstance(error.details, dict) else {}
    return RefusedRun(
        job_id=job_id,
        source="upstream",
        limit=details.get("limit"),
        reason=error.message,
        refused_at=utcnow(),
        details={"upstream_run_id": str(row.run_id), "upstream_job": upstream},
    )


class Reactor:
    """Consumes finished runs' outbox rows until :meth:`stop` (``baton scheduler``/``dev``)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        settings: Settings,
        *,
        sweep_seconds: float = 10.0,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.redis = redis
        self.settings = settings
        self.sweep_seconds = sweep_seconds
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        _wake.set()

    async def _due_tenants(self) -> set[uuid.UUID]:
        """The tenants with outbox rows, a notification due or a job with an SLA (one
        call, migration 0021): the others have nothing for a sweep to do."""
        async with self.sessionmaker() as session:
            rows = await session.execute(text("SELECT reactor_due_tenants()"))
            return {row[0] for row in rows.all()}

    async def run(self) -> None:
        """React to kicks (after ``REACT_DELAY_SECONDS``), and every ``sweep_seconds``
        sweep the tenants that have work (``_due_tenants``): rows other processes wrote,
        notifications due, SLAs."""
        last_sweep = -math.inf  # the first pass sweeps
        while not self._stopping.is_set():
            if _kicked:  # the runs finished meanwhile join this pass
                await wait_event(self._stopping, REACT_DELAY_SECONDS)
            _wake.clear()
            work: dict[uuid.UUID, Collection[str]] = {t: set(w) for t, w in _kicked.items()}
            _kicked.clear()
            try:
                sweeping = time.monotonic() - last_sweep >= self.sweep_seconds
                if sweeping:
                    work.update(dict.fromkeys(await self._due_tenants(), EVERYTHING))
                    last_sweep = time.monotonic()
                for tenant_id in sorted(work):
                    if self._stopping.is_set():
                        break
                    await self.serve_tenant(tenant_id, work[tenant_id], sweeping=sweeping)
            except (RedisError, OSError, SQLAlchemyError) as error:
                log.warning("triggers.reactor_failed", error=type(error).__name__)
                for tenant_id, what in work.items():  # try them again
                    _kicked.setdefault(tenant_id, set()).update(what)
            await wait_event(_wake, min(self.sweep_seconds, 1.0))

    async def serve_tenant(
        self, tenant_id: uuid.UUID, what: Collection[str], *, sweeping: bool
    ) -> None:
        """Drain the tenant's outboxes named in ``what``; on a sweep check its SLAs; send
        its due notifications when this pass queued some or on a sweep (retries)."""
        queued = 0
        while True:
            done = await react(self.sessionmaker, self.redis, self.settings, tenant_id, what)
            queued += done.queued
            if not done.taken or self._stopping.is_set():
                break
        if sweeping:
            queued += await check_tenant_slas(self.sessionmaker, self.settings, tenant_id)
        if sweeping or queued:
            await send_notifications(self.sessionmaker, self.settings, tenant_id)
