"""Triggering, reading, cancelling and re-running runs.

A trigger inserts the run and all its task runs in the caller's transaction; the root tasks
are ``queued`` with ``ready_at`` = the run's start time. Only after the commit is the
engine told (``mark_tenant_due``), so it never sees work that might still roll back.

Every trigger - single, batch, rerun, and later cron - goes through :func:`_create_runs`,
so idempotency keys and the job's ``concurrency_policy`` hold for all of them:
``allow`` runs side by side, ``forbid`` refuses a new run while one is active, ``replace``
cancels the active ones first.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from sqlmodel import SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit import service as audit
from backend.core.cursor import decode_cursor, decode_position, encode_cursor, encode_position
from backend.core.db import after_commit
from backend.core.errors import Conflict, NotFound, ValidationFailed
from backend.core.models import utcnow, uuid7
from backend.core.principal import Actor, Principal
from backend.dispatch.signals import publish_cancel, queue_tenant_due
from backend.jobs.graph import build_graph
from backend.jobs.models import Job
from backend.jobs.repository import JobRepository, JobVersionRepository
from backend.jobs.spec import JobSpec
from backend.notify.repository import SlaMissRepository
from backend.plans.service import Limits
from backend.retention.service import RETENTION_LIMIT, horizon
from backend.runs.advance import advance_run
from backend.runs.hooks import FinishedRun, runs_finished
from backend.runs.models import Run, TaskRun
from backend.runs.publish import publish as publish_updates
from backend.runs.publish import queue_updates, run_update
from backend.runs.quota import check_run_limits, check_run_quota
from backend.runs.repository import (
    AttemptRepository,
    LogRepository,
    RunRepository,
    TaskRunRepository,
    insert_triggered,
)
from backend.runs.schemas import (
    AttemptPublic,
    LogLinePublic,
    RunDetail,
    RunGraph,
    RunGraphNode,
    RunPublic,
    RunSlaMiss,
    RunTrigger,
    TaskRunPublic,
)
from kernel.dag.decisions import reusable
from kernel.dag.plan import PLANS, RunPlan, TaskPlan, compile_plan
from kernel.dag.status import FINISHED_RUN, FINISHED_TASK, RunStatus, TaskStatus
from kernel.metrics import RUNS_FINISHED, TENANTS

IN_FLIGHT = (TaskStatus.queued, TaskStatus.running)


@dataclass
class NewRun:
    params: dict[str, Any]
    run_at: datetime
    idempotency_key: str | None = None
    rerun_of: uuid.UUID | None = None
    reused: dict[str, TaskRun] = field(default_factory=dict)
    scheduled_for: datetime | None = None
    run_id: uuid.UUID = field(default_factory=uuid7)  # time-ordered, fixed before insert


async def _job_and_plan(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    version: int | None = None,
    *,
    lock_job: bool = False,
) -> tuple[Job, RunPlan]:
    jobs = JobRepository(session, tenant_id)
    job = await jobs.get_active(job_id, lock=lock_job)
    if job is not None and not lock_job and job.concurrency_policy != "allow":
        # forbid/replace look at the job's active runs: serialise its triggers. Under
        # "allow" triggers run side by side (idempotency keys are settled by the index).
        job = await jobs.get_active(job_id, lock=True)
    if job is None:
        raise NotFound("Job not found")
    pinned = version or job.current_version
    plan = PLANS.get(tenant_id, job.id, pinned)
    if plan is None:
        found = await JobVersionRepository(session, tenant_id).get(job_id=job.id, version=pinned)
        if found is None:
            raise NotFound("Job version not found")
        plan = PLANS.put(tenant_id, compile_plan(job.id, pinned, found.spec))
    return job, plan


def _start_time(request: RunTrigger, now: datetime) -> datetime:
    if request.run_at is not None:
        return max(request.run_at, now)
    if request.delay_seconds:
        return now + timedelta(seconds=request.delay_seconds)
    return now


async def trigger(
    session: AsyncSession,
    redis: Redis,
    principal: Principal,
    job_id: uuid.UUID,
    requests: list[RunTrigger],
) -> list[tuple[Run, bool]]:
    """Trigger one or more runs of a job (one transaction); (run, created) in request order.

    A request whose idempotency key was seen before answers the existing run and creates
    nothing.
    """
    now = utcnow()
    job, plan = await _job_and_plan(session, principal.tenant_id, job_id)
    runs = RunRepository(session, principal.tenant_id)
    keys = [r.idempotency_key for r in requests if r.idempotency_key]
    existing = await runs.by_idempotency_keys(job.id, keys)
    fresh: dict[str, NewRun] = {}
    order: list[tuple[str | None, NewRun | None]] = []
    for request in requests:
        key = request.idempotency_key
        if key is not None and (key in existing or key in fresh):
            order.append((key, None))
            continue
        new = NewRun(
            params={**plan.params, **request.params},
            run_at=_start_time(request, now),
            idempotency_key=key,
        )
        if key is not None:
            fresh[key] = new
        order.append((key, new))
    to_create = [new for _, new in order if new is not None]
    await check_run_quota(session, principal, adding=len(to_create), now=now)
    created = await _create_runs(
        session,
        redis,
        principal.tenant_id,
        job,
        plan,
        to_create,
        trigger="manual" if len(requests) == 1 else "batch",
        actor=principal,
    )
    by_id = {run.id: run for run in created}
    lost = [n.idempotency_key for n in to_create if n.run_id not in by_id and n.idempotency_key]
    if lost:  # raced with a concurrent request using the same keys
        existing.update(await runs.by_idempotency_keys(job.id, lost))
    known = {**existing, **{r.idempotency_key: r for r in created if r.idempotency_key}}
    result: list[tuple[Run, bool]] = []
    for key, maybe_new in order:
        if maybe_new is not None and maybe_new.run_id in by_id:
            result.append((by_id[maybe_new.run_id], True))
        else:
            assert key is not None  # only keyed requests are answered with an earlier run
            result.append((known[key], False))
    return result


async def _create_runs(
    session: AsyncSession,
    redis: Redis,
    tenant_id: uuid.UUID,
    job: Job,
    plan: RunPlan,
    new_runs: list[NewRun],
    *,
    trigger: str,
    actor: Principal | None,
    policy: str | None = None,
    system_audit: tuple[Actor, dict[str, Any]] | None = None,
) -> list[Run]:
    """Insert runs and their task runs under the job's concurrency policy (or ``policy``).

    The ``run.triggered`` audit event names ``actor``; a run no user asked for names the
    system actor and details of ``system_audit`` instead (none given: no event, as for the
    scheduler, which audits its fires itself)."""
    if not new_runs:
        return []
    runs = RunRepository(session, tenant_id)
    policy = policy or job.concurrency_policy
    if policy != "allow":
        if len(new_runs) > 1:
            raise ValidationFailed(
                f"Job {job.name!r} has concurrency_policy {policy}: trigger one run at a time",
                details=[{"loc": ["body", "runs"], "msg": "more than one run"}],
            )
        active = await runs.active_for_job(job.id)
        if active and policy == "forbid":
            raise Conflict(
                f"Job {job.name!r} forbids concurrent runs and run {active[0].id} is active",
                details={"active_run_id": str(active[0].id), "concurrency_policy": policy},
            )
        if active:
            await _cancel(session, redis, tenant_id, active, reason="replaced by a newer run")

    created, task_rows = _build_runs(
        tenant_id, job.id, plan, new_runs, trigger=trigger, actor=actor, now=utcnow()
    )
    audit_row: dict[str, Any] | None = None
    if actor is None and system_audit is not None and len(created) == 1:
        system_actor, details = system_audit
        audit_row = audit.pending_row(
            tenant_id=tenant_id,
            actor=system_actor,
            action="run.triggered",
            target_type="run",
            target_id=created[0].id,
            details={"job_id": str(job.id), "trigger": trigger, **details},
        )
    if actor is not None:
        # Appended unsealed, in the same statement as the runs: no chain lock on the
        # request path (backend.audit.sealer chains it after the commit).
        audit_row = audit.pending_row(
            tenant_id=tenant_id,
            actor=actor.actor,
            origin=actor.origin,
            action="run.triggered" if len(created) == 1 else "run.batch_triggered",
            target_type="run" if len(created) == 1 else "job",
            target_id=created[0].id if len(created) == 1 else job.id,
            details={"job_id": str(job.id), "trigger": trigger}
            if len(created) == 1
            else {"trigger": trigger},
        )
    inserted = await insert_triggered(
        session,
        [_row(run) for run in created],
        task_rows,
        audit_row,
        count_runs=len(created) > 1,
    )
    if len(inserted) < len(created):
        # A concurrent request created a run with the same idempotency key first: keep
        # its run, drop ours (trigger() answers with the winner).
        created = [run for run in created if run.id in inserted]
    if not created:
        return []
    if audit_row is not None:
        audit.seal_soon(session, tenant_id)
    done = [run for run in created if run.status in FINISHED_RUN]  # e.g. every task skipped
    if done:
        await runs_finished.fire(
            session,
            tenant_id,
            [
                FinishedRun(r.id, r.job_id, r.status, r.reason, r.finished_at or utcnow())
                for r in done
            ],
        )
    first_start = min(new.run_at for new in new_runs)
    updates = [run_update(run) for run in created]

    async def notify_engine() -> None:
        # One round trip: the engine's due index and wake-up, then the live updates.
        async with redis.pipeline(transaction=False) as pipe:
            queue_tenant_due(pipe, tenant_id, first_start)
            queue_updates(pipe, tenant_id, updates)
            await pipe.execute()

    after_commit(session, notify_engine)
    return created


def _build_runs(
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    plan: RunPlan,
    new_runs: list[NewRun],
    *,
    trigger: str,
    actor: Principal | None,
    now: datetime,
) -> tuple[list[Run], list[dict[str, Any]]]:
    """The runs (not yet inserted) and the rows of their task runs, root tasks decided."""
    created: list[Run] = []
    task_rows: list[dict[str, Any]] = []
    for new in new_runs:
        run = Run(
            id=new.run_id,
            tenant_id=tenant_id,
            job_id=job_id,
            job_version=plan.version,
            status=RunStatus.queued,
            trigger=trigger,
            params=new.params,
            idempotency_key=new.idempotency_key,
            run_at=new.run_at,
            scheduled_for=new.scheduled_for,
            deadline_at=(
                new.run_at + timedelta(seconds=plan.timeout_seconds)
                if plan.timeout_seconds
                else None
            ),
            rerun_of=new.rerun_of,
            created_by=actor.user_id if actor else None,
            created_at=now,
        )
        tasks = {
            name: _new_task(run, task, new.reused.get(name), now)
            for name, task in plan.tasks.items()
        }
        advanced = advance_run(plan, run, tasks, now=now, ready_at=new.run_at)
        task_rows.extend(_row(task) for task in [*tasks.values(), *advanced.children])
        created.append(run)
    return created, task_rows


def scheduled_runs(
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    plan: RunPlan,
    fires: list[NewRun],
    *,
    now: datetime,
) -> tuple[list[Run], list[dict[str, Any]], list[dict[str, Any]]]:
    """A schedule's runs for the set-based firing path (``backend.schedules.firing``): the
    runs, their rows and their task runs' rows, ready for :func:`insert_triggered`. The
    caller has applied the concurrency policy and the quota; the runs are not inserted."""
    runs, task_rows = _build_runs(
        tenant_id, job_id, plan, fires, trigger="schedule", actor=None, now=now
    )
    return runs, [_row(run) for run in runs], task_rows


def _new_task(run: Run, task: TaskPlan, reused: TaskRun | None, now: datetime) -> TaskRun:
    """A run's task row before any decision: pending, or succeeded with a reused output."""
    return TaskRun(
        tenant_id=run.tenant_id,
        id=uuid.uuid4(),
        run_id=run.id,
        name=task.name,
        queue=task.queue,
        status=TaskStatus.succeeded if reused else TaskStatus.pending,
        max_attempts=task.retry.max_attempts,
        output=reused.output if reused else None,
        reason="reused" if reused else None,
        explanation=f"output reused from run {reused.run_id}" if reused else None,
        finished_at=now if reused else None,
    )


def _row(row: SQLModel) -> dict[str, Any]:
    """A model's column values, for a bulk INSERT."""
    return {column.name: getattr(row, column.name) for column in row.__table__.columns}  # type: ignore[attr-defined]


async def trigger_scheduled(
    session: AsyncSession,
    redis: Redis,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    *,
    scheduled_for: datetime,
    run_at: datetime,
    policy: str | None,
) -> Run:
    """Start the run a schedule is due for (the session is scoped to the tenant).

    The unique index on (job, scheduled instant) makes a second run for the same instant
    impossible, whichever replica or restart tries. ``Conflict`` when the concurrency
    policy forbids it.
    """
    job, plan = await _job_and_plan(session, tenant_id, job_id, lock_job=True)
    new = NewRun(params=dict(plan.params), run_at=run_at, scheduled_for=scheduled_for)
    created = await _create_runs(
        session,
        redis,
        tenant_id,
        job,
        plan,
        [new],
        trigger="schedule",
        actor=None,
        policy=policy,
    )
    return created[0]


async def trigger_unattended(
    session: AsyncSession,
    redis: Redis,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    *,
    params: dict[str, Any],
    idempotency_key: str | None,
    trigger: str,
    limits: Limits,
    source: dict[str, Any] | None = None,
) -> tuple[Run, bool]:
    """Start a run no user asked for (an inbound webhook, an upstream run's trigger) in a
    session scoped to the tenant; (run, created). A seen ``idempotency_key`` answers the
    earlier run and creates nothing. The plan's run limits and the job's concurrency
    policy hold as for any trigger (``QuotaExceeded``, ``Conflict``).

    A created run is audited (``run.triggered``, pending, sealed after the commit like a
    user's) in the same transaction, attributed to a system actor named after ``trigger``
    (:func:`unattended_actor`); its details hold the idempotency key, the upstream run for
    a job-to-job trigger, and ``source`` (what started it, e.g. ``{"endpoint_id": ...}``)."""
    now = utcnow()
    job, plan = await _job_and_plan(session, tenant_id, job_id)
    runs = RunRepository(session, tenant_id)
    if idempotency_key is not None:
        seen = await runs.by_idempotency_keys(job.id, [idempotency_key])
        if idempotency_key in seen:
            return seen[idempotency_key], False
    await check_run_limits(session, tenant_id, limits, adding=1, now=now)
    new = NewRun(params={**plan.params, **params}, run_at=now, idempotency_key=idempotency_key)
    created = await _create_runs(
        session,
        redis,
        tenant_id,
        job,
        plan,
        [new],
        trigger=trigger,
        actor=None,
        system_audit=(
            unattended_actor(trigger),
            _unattended_details(params, idempotency_key, source),
        ),
    )
    if created:
        return created[0], True
    assert idempotency_key is not None  # only a keyed run can lose to a concurrent one
    seen = await runs.by_idempotency_keys(job.id, [idempotency_key])
    return seen[idempotency_key], False


# Who a run no user asked for is attributed to, by its trigger; others: "system".
UNATTENDED_ACTORS = {
    "webhook": Actor(type="system", label="webhook"),
    "upstream": Actor(type="system", label="trigger"),
}


def unattended_actor(trigger: str) -> Actor:
    """The system actor the audit log names for a run started by ``trigger``."""
    return UNATTENDED_ACTORS.get(trigger, Actor(type="system", label=trigger[:100] or "system"))


def _unattended_details(
    params: dict[str, Any], idempotency_key: str | None, source: dict[str, Any] | None
) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if idempotency_key is not None:
        details["idempotency_key"] = idempotency_key
    upstream = params.get("upstream")
    if isinstance(upstream, dict) and upstream.get("run_id"):
        details["upstream_run_id"] = str(upstream["run_id"])
    return {**details, **(source or {})}


async def _cancel(
    session: AsyncSession, redis: Redis, tenant_id: uuid.UUID, runs: list[Run], *, reason: str
) -> None:
    """Cancel runs: the run and its unfinished tasks end now; workers are told after commit."""
    now = utcnow()
    run_repo = RunRepository(session, tenant_id)
    task_repo = TaskRunRepository(session, tenant_id)
    await run_repo.update_many(
        [
            {
                "tenant_id": tenant_id,
                "id": run.id,
                "status": RunStatus.cancelled,
                "finished_at": now,
                "reason": reason,
            }
            for run in runs
        ]
    )
    tasks = await task_repo.for_runs([run.id for run in runs], lock=True)
    stop = [(t.id, t.attempt) for t in tasks if t.status in IN_FLIGHT and t.dispatched_at]
    await task_repo.update_many(
        [
            {
                "tenant_id": tenant_id,
                "id": t.id,
                "status": TaskStatus.cancelled,
                "finished_at": now,
                "reason": "cancelled",
            }
            for t in tasks
            if t.status not in FINISHED_TASK
        ]
    )
    await runs_finished.fire(
        session,
        tenant_id,
        [FinishedRun(run.id, run.job_id, RunStatus.cancelled, reason, now) for run in runs],
    )
    job_of = {run.id: run.job_id for run in runs}
    updates = [
        {
            "type": "run",
            "run_id": str(run.id),
            "job_id": str(run.job_id),
            "status": RunStatus.cancelled,
            "reason": reason,
        }
        for run in runs
    ] + [
        {
            "type": "task",
            "run_id": str(task.run_id),
            "job_id": str(job_of[task.run_id]),
            "task": task.name,
            "status": TaskStatus.cancelled,
            "attempt": task.attempt,
            "reason": "cancelled",
            "explanation": None,
        }
        for task in tasks
        if task.status not in FINISHED_TASK
    ]

    async def tell_workers() -> None:
        # These runs end here, not in the engine: count them as the engine counts its own.
        RUNS_FINISHED.labels(TENANTS.label(tenant_id), RunStatus.cancelled).inc(len(runs))
        if stop:
            await publish_cancel(redis, tenant_id, stop)
        await publish_updates(redis, tenant_id, updates)

    after_commit(session, tell_workers)


async def cancel_run(
    session: AsyncSession, redis: Redis, principal: Principal, run_id: uuid.UUID
) -> Run:
    """Cancel a queued or running run; running tasks are stopped (process group killed)."""
    runs = RunRepository(session, principal.tenant_id)
    found = await runs.by_ids([run_id], lock=True)
    if not found:
        raise NotFound("Run not found")
    run = found[0]
    if run.status in FINISHED_RUN:
        raise Conflict(f"Run already {run.status}")
    await _cancel(
        session, redis, principal.tenant_id, [run], reason=f"cancelled by {principal.email}"
    )
    await audit.record_for(session, principal, "run.cancelled", target_type="run", target_id=run.id)
    await session.refresh(run)
    return run


async def rerun(
    session: AsyncSession,
    redis: Redis,
    principal: Principal,
    run_id: uuid.UUID,
    *,
    from_failed: bool,
) -> Run:
    """A new run of the same job version and params.

    ``from_failed`` takes over the outputs of tasks that succeeded and have nothing
    upstream that runs again (:func:`kernel.dag.decisions.reusable`); every other task,
    including everything downstream of a task that runs again, runs again.
    """
    found = await RunRepository(session, principal.tenant_id).by_ids([run_id])
    if not found:
        raise NotFound("Run not found")
    original = found[0]
    job, plan = await _job_and_plan(
        session, principal.tenant_id, original.job_id, original.job_version
    )
    reused: dict[str, TaskRun] = {}
    if from_failed:
        tasks = await TaskRunRepository(session, principal.tenant_id).top_level([original.id])
        keep = reusable(plan, {t.name: t.status for t in tasks})
        reused = {t.name: t for t in tasks if t.name in keep}
    new = NewRun(params=original.params, run_at=utcnow(), rerun_of=original.id, reused=reused)
    await check_run_quota(session, principal, adding=1, now=new.run_at)
    created = await _create_runs(
        session, redis, principal.tenant_id, job, plan, [new], trigger="rerun", actor=principal
    )
    return created[0]


def history_window(principal: Principal) -> tuple[int | None, datetime | None]:
    """How far back the caller's history goes: its plan's retention in days and the
    instant before which runs are removed (both None: kept forever)."""
    days = Limits.of_principal(principal).of(RETENTION_LIMIT)
    return days, horizon(days)


async def list_runs(
    session: AsyncSession,
    principal: Principal,
    *,
    job_id: uuid.UUID | None,
    statuses: list[str],
    cursor: str | None,
    limit: int,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> tuple[list[Run], str | None]:
    """Runs newest first, filtered by job, status and creation time (``created_after``
    inclusive, ``created_before`` exclusive); returns the next page's cursor."""
    if created_after and created_before and created_after >= created_before:
        raise ValidationFailed(
            "created_after must be earlier than created_before",
            details=[{"loc": ["query", "created_before"], "msg": "not after created_after"}],
        )
    before = decode_position(cursor) if cursor else None
    rows = await RunRepository(session, principal.tenant_id).page(
        limit=limit + 1,
        job_id=job_id,
        statuses=statuses,
        before=before,
        created_after=created_after,
        created_before=created_before,
    )
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_position(last.created_at, last.id)
    return rows[:limit], next_cursor


async def job_names(
    session: AsyncSession, principal: Principal, job_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The names of the jobs runs belong to, deleted jobs included (their runs remain)."""
    wanted = list(set(job_ids))
    if not wanted:
        return {}
    statement = JobRepository(session, principal.tenant_id).select().where(col(Job.id).in_(wanted))
    return {job.id: job.name for job in (await session.exec(statement)).all()}


async def get_run(session: AsyncSession, principal: Principal, run_id: uuid.UUID) -> RunDetail:
    """A run with its task runs and every attempt of each, and its SLA miss if it missed."""
    found = await RunRepository(session, principal.tenant_id).detail(run_id)
    if found is None:
        raise NotFound("Run not found")
    run, tasks = found  # one snapshot: run, tasks and attempts agree with each other
    miss = await SlaMissRepository(session, principal.tenant_id).for_run(run.id)
    return RunDetail(
        **RunPublic.model_validate(run).model_dump(),
        sla_miss=RunSlaMiss.model_validate(miss) if miss is not None else None,
        tasks=[
            TaskRunPublic.model_validate(task).model_copy(
                update={"attempts": [AttemptPublic.model_validate(a) for a in attempts]}
            )
            for task, attempts in sorted(tasks, key=lambda pair: pair[0].name)
        ],
    )


async def read_logs(
    session: AsyncSession,
    principal: Principal,
    run_id: uuid.UUID,
    *,
    task: str | None,
    attempt: int | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[LogLinePublic], str | None]:
    """Log lines of a run (optionally one task / attempt) in order; readable while running."""
    found = await RunRepository(session, principal.tenant_id).by_ids([run_id])
    if not found:
        raise NotFound("Run not found")
    tasks = await TaskRunRepository(session, principal.tenant_id).for_runs([run_id])
    names = {t.id: t.name for t in tasks if task is None or t.name == task}
    if task is not None and not names:
        raise NotFound(f"Run has no task {task!r}")
    after = None
    if cursor:
        raw_at, raw_task, raw_attempt, raw_seq = decode_cursor(cursor, 4)
        try:
            after = (
                datetime.fromisoformat(raw_at),
                uuid.UUID(raw_task),
                int(raw_attempt),
                int(raw_seq),
            )
        except ValueError as error:
            raise ValidationFailed("Invalid cursor") from error
    lines = await LogRepository(session, principal.tenant_id).page(
        task_run_ids=list(names), attempt=attempt, after=after, limit=limit + 1
    )
    next_cursor = None
    if len(lines) > limit:
        last = lines[limit - 1]
        next_cursor = encode_cursor(
            last.logged_at.isoformat(), last.task_run_id, last.attempt, last.seq
        )
    return [
        LogLinePublic(
            task=names[line.task_run_id],
            attempt=line.attempt,
            seq=line.seq,
            logged_at=line.logged_at,
            stream=line.stream,
            line=line.line,
        )
        for line in lines[:limit]
    ], next_cursor


async def get_graph(session: AsyncSession, principal: Principal, run_id: uuid.UUID) -> RunGraph:
    """The run's DAG with each node's status, attempts, timings and the reason for every
    skip, upstream failure or cancellation."""
    found = await RunRepository(session, principal.tenant_id).by_ids([run_id])
    if not found:
        raise NotFound("Run not found")
    run = found[0]
    version = await JobVersionRepository(session, principal.tenant_id).get(
        job_id=run.job_id, version=run.job_version
    )
    if version is None:
        raise NotFound("Job version not found")
    shape = build_graph(run.job_id, run.job_version, JobSpec.model_validate(version.spec))
    repo = TaskRunRepository(session, principal.tenant_id)
    tasks = {t.name: t for t in await repo.top_level([run.id])}
    nodes = []
    for node in shape.nodes:
        task = tasks[node.name]
        duration = (
            (task.finished_at - task.started_at).total_seconds()
            if task.started_at and task.finished_at
            else None
        )
        items = await repo.child_status_counts(task.id) if node.for_each else None
        nodes.append(
            RunGraphNode(
                **node.model_dump(),
                status=task.status,
                attempts=task.attempt,
                started_at=task.started_at,
                finished_at=task.finished_at,
                duration_seconds=duration,
                reason=task.reason,
                explanation=task.explanation,
                error=task.error,
                items=items,
            )
        )
    return RunGraph(
        run_id=run.id,
        job_id=run.job_id,
        version=run.job_version,
        status=run.status,
        nodes=nodes,
        edges=shape.edges,
        layers=shape.layers,
    )


async def task_state(
    session: AsyncSession, principal: Principal, run_id: uuid.UUID, *, task: str
) -> TaskRun:
    """One task of a run as it is now (status, current attempt); 404 when either is unknown."""
    found = await RunRepository(session, principal.tenant_id).by_ids([run_id])
    if not found:
        raise NotFound("Run not found")
    tasks = await TaskRunRepository(session, principal.tenant_id).for_runs([run_id])
    task_run = next((t for t in tasks if t.name == task), None)
    if task_run is None:
        raise NotFound(f"Run has no task {task!r}")
    return task_run


@dataclass
class LogTail:
    lines: list[LogLinePublic]
    attempt: int
    finished: bool  # the attempt has ended: no line will follow those read


async def tail_logs(
    session: AsyncSession,
    principal: Principal,
    run_id: uuid.UUID,
    *,
    task: str,
    attempt: int | None,
    after_seq: int,
) -> LogTail:
    """One task attempt's lines after ``after_seq`` (default: its current attempt)."""
    task_run = await task_state(session, principal, run_id, task=task)
    number = attempt or max(task_run.attempt, 1)
    lines = await LogRepository(session, principal.tenant_id).after_seq(
        task_run.id, number, after_seq
    )
    attempts = await AttemptRepository(session, principal.tenant_id).for_runs([run_id])
    record = next(
        (a for a in attempts if a.task_run_id == task_run.id and a.attempt == number), None
    )
    over = (record is not None and record.finished_at is not None) or (
        task_run.status in FINISHED_TASK and number >= task_run.attempt
    )
    return LogTail(
        lines=[
            LogLinePublic(
                task=task,
                attempt=line.attempt,
                seq=line.seq,
                logged_at=line.logged_at,
                stream=line.stream,
                line=line.line,
            )
            for line in lines
        ],
        attempt=number,
        finished=over,
    )
