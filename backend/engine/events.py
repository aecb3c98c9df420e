"""Apply a batch of worker events to PostgreSQL and advance the affected runs.

One call handles one tenant's batch in the caller's transaction:

1. lock the affected runs (``FOR UPDATE``, in id order) so engine replicas advancing the
   same run serialise instead of racing;
2. fold the events into the task runs - fenced by attempt number, so a late or duplicate
   event of an older attempt changes nothing;
3. decide retries (exponential backoff through ``ready_at``, the due-time index), then
   advance each run's DAG and settle finished runs;
4. write the changed rows set-based (``engine/writes.py``); bulk-insert log lines.

The rows are records read by raw statements (``engine/records.py``, ``engine/reads.py``),
not ORM objects. The returned :class:`Effects` say what must happen in Redis after the commit.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

import backend.wiring  # noqa: F401  (the hooks fired here are connected there)
from backend.core.db import driver_connection
from backend.core.models import utcnow
from backend.engine import reads
from backend.engine.records import AttemptRecord, RunRecord, TaskRecord
from backend.engine.writes import write_changes
from backend.jobs.repository import JobVersionRepository
from backend.metrics.samples import EngineSamples, observe_event_lag
from backend.runs.advance import advance_run
from backend.runs.hooks import FinishedRun, runs_finished
from backend.runs.models import plan_name
from backend.runs.publish import run_update, task_update
from backend.runs.repository import LogRepository, TaskRunRepository
from kernel.dag.decisions import group_outcome
from kernel.dag.plan import PlanCache, RunPlan, TaskPlan, compile_plan
from kernel.dag.status import FINISHED_RUN, FINISHED_TASK, RunStatus, TaskStatus
from kernel.wire.protocol import TaskEvent

log = structlog.get_logger(__name__)

MAX_LINE_CHARS = 16_384
ACTIVE = (TaskStatus.queued, TaskStatus.running)
# Lost attempts (the worker died, or its dispatch vanished with Redis's data) are retried
# at once without using up the task's retries; the one that makes this many fails the task
# with reason "lost" (a task that kills every worker it runs on must not loop forever).
MAX_LOST_ATTEMPTS = 3


@dataclass
class Effects:
    """What the engine must do in Redis once the transaction has committed."""

    due_at: datetime | None = None  # earliest instant this tenant has work to admit
    cancel: list[tuple[uuid.UUID, int]] = field(default_factory=list)
    finished_runs: list[RunRecord] = field(default_factory=list)
    changed_tasks: list[TaskRecord] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)  # for live views (SSE)
    samples: EngineSamples = field(default_factory=EngineSamples)  # metrics, after commit
    # The batch's runs (read and locked): admission in the same transaction builds its
    # messages from them without reading them again.
    runs: dict[uuid.UUID, RunRecord] = field(default_factory=dict)

    def due(self, at: datetime) -> None:
        self.due_at = at if self.due_at is None else min(self.due_at, at)


async def load_plan(
    session: AsyncSession, plans: PlanCache, tenant_id: uuid.UUID, job_id: uuid.UUID, version: int
) -> RunPlan:
    """The compiled plan of a job version, from the cache or the database."""
    plan = plans.get(tenant_id, job_id, version)
    if plan is None:
        found = await JobVersionRepository(session, tenant_id).get(job_id=job_id, version=version)
        if found is None:
            raise LookupError(f"job {job_id} version {version} not found")
        plan = plans.put(tenant_id, compile_plan(job_id, version, found.spec))
    return plan


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class _Batch:
    def __init__(
        self,
        session: AsyncSession,
        conn: asyncpg.Connection,
        tenant_id: uuid.UUID,
        plans: PlanCache,
        lost_before: datetime | None = None,
    ) -> None:
        self.session = session
        self.conn = conn  # the session's transaction, for the raw reads and writes
        # A worker's "lost" report counts only if the attempt's heartbeat is older than this
        # (None: the engine may not judge lost now) - see :func:`apply_events`.
        self.lost_before = lost_before
        self.tenant_id = tenant_id
        self.plans = plans
        self.effects = Effects()
        self.tasks: dict[uuid.UUID, TaskRecord] = {}
        self.runs: dict[uuid.UUID, RunRecord] = {}
        self.run_tasks: dict[uuid.UUID, list[TaskRecord]] = {}
        self.attempts: dict[tuple[uuid.UUID, int], AttemptRecord] = {}
        self.log_rows: list[dict[str, Any]] = []
        self.touched_runs: set[uuid.UUID] = set()
        self.changed: dict[uuid.UUID, TaskRecord] = {}
        self.run_status_before: dict[uuid.UUID, str] = {}
        # "running" as live views saw it when it happened: a task (and its run) that starts
        # and finishes within one batch still shows each state change, in order.
        self.started_updates: list[tuple[TaskRecord | RunRecord, dict[str, Any]]] = []

    async def load(self, task_run_ids: set[uuid.UUID], *, whole_runs: bool = True) -> None:
        """Lock the affected runs, then read their top-level tasks and the touched children.

        A run with a 10,000-item fan-out is not read whole: only the children that events
        name, and per group a count by status when one of its children finishes. Without
        ``whole_runs`` (a batch of starts, heartbeats and logs, which cannot advance a DAG)
        only the tasks the events name are read.
        """
        # The runs the events' tasks belong to, locked in id order, in one round trip.
        runs = await reads.lock_runs_of_tasks(self.conn, self.tenant_id, task_run_ids)
        if not runs:
            return
        run_ids = [r.id for r in runs]
        self.runs = {r.id: r for r in runs}
        self.run_status_before = {r.id: r.status for r in runs}
        if whole_runs:
            for task in await reads.top_level_tasks(self.conn, self.tenant_id, run_ids):
                self.run_tasks.setdefault(task.run_id, []).append(task)
                self.tasks[task.id] = task
        missing = [i for i in task_run_ids if i not in self.tasks]
        for child in await reads.tasks(self.conn, self.tenant_id, missing) if missing else []:
            self.tasks[child.id] = child
        if task_run_ids:
            for attempt in await reads.attempts(self.conn, self.tenant_id, task_run_ids):
                self.attempts[(attempt.task_run_id, attempt.attempt)] = attempt

    async def write(self) -> None:
        """Write what the batch changed so far (what is unchanged is not sent again)."""
        await write_changes(
            self.conn,
            self.tenant_id,
            tasks=self.tasks.values(),
            runs=self.runs.values(),
            attempts=self.attempts.values(),
        )

    def _attempt(self, task: TaskRecord) -> AttemptRecord:
        key = (task.id, task.attempt)
        attempt = self.attempts.get(key)
        if attempt is None:
            attempt = AttemptRecord(
                tenant_id=self.tenant_id,
                task_run_id=task.id,
                attempt=task.attempt,
                run_id=task.run_id,
                status="dispatched",
            )
            self.attempts[key] = attempt
        return attempt

    def _mark(self, task: TaskRecord, *, advance: bool = True) -> None:
        """Record a changed task; ``advance``: its run's DAG may move on because of it (a
        start or a heartbeat cannot make another task ready, so it does not advance)."""
        self.changed[task.id] = task
        if advance:
            self.touched_runs.add(task.run_id)

    def apply(self, event: TaskEvent) -> None:
        task = self.tasks.get(uuid.UUID(event.task_run_id))
        if task is None or event.attempt != task.attempt:
            return  # unknown, or an older attempt's late word: fenced off
        at = _ts(event.ts)
        run = self.runs.get(task.run_id)
        if run is None or run.status in FINISHED_RUN or task.status not in ACTIVE:
            if event.kind == "finished":
                self._close_attempt(task, event.result or {}, at)  # e.g. a cancelled run's
            return
        if event.kind == "started":
            self._started(task, run, event, at)
        elif event.kind == "heartbeat":
            if task.status == TaskStatus.queued and task.dispatched_at is not None:
                # Its "started" went missing (Redis lost it): a heartbeat says the same.
                self._started(task, run, event, at)
            if task.status == TaskStatus.running:
                task.heartbeat_at = max(at, task.heartbeat_at or at)
                self._mark(task, advance=False)
        elif event.kind == "log":
            for item in event.lines:
                self.log_rows.append(
                    {
                        "tenant_id": self.tenant_id,
                        "task_run_id": task.id,
                        "attempt": task.attempt,
                        "seq": int(item["seq"]),
                        "logged_at": _ts(float(item.get("ts", event.ts))),
                        "stream": str(item.get("stream", "stdout"))[:10],
                        "line": str(item.get("line", ""))[:MAX_LINE_CHARS],
                    }
                )
        elif event.kind == "finished":
            result = event.result or {}
            if result.get("reason") == "lost" and not self._silent(task):
                return  # the entry's worker may be alive after all: the sweep decides
            self.finish(task, result, at, worker=event.worker)
        elif event.kind == "released":
            self._released(task, at)

    def _silent(self, task: TaskRecord) -> bool:
        """Whether a worker's "lost" report about this attempt may be believed.

        Never started: yes - a worker running it would have sent "started" first, on the
        same stream, so it would have been applied before this report. Running: only if
        the engine has listened long enough and the last heartbeat is older than
        ``lost_after`` (after an outage an entry looks abandoned to other workers before
        its own worker's next heartbeat re-claims it)."""
        if task.status == TaskStatus.queued:
            return True
        if self.lost_before is None or task.heartbeat_at is None:
            return False
        return task.heartbeat_at < self.lost_before

    def _lost_so_far(self, task: TaskRecord) -> int:
        return sum(
            1
            for (task_id, _), attempt in self.attempts.items()
            if task_id == task.id and attempt.reason == "lost"
        )

    def _close_attempt(self, task: TaskRecord, result: dict[str, Any], at: datetime) -> None:
        """Record how an attempt ended after its task was already settled (cancelled)."""
        attempt = self.attempts.get((task.id, task.attempt))
        if attempt is None or attempt.finished_at is not None:
            return
        attempt.status = (
            TaskStatus.cancelled
            if result.get("reason") == "cancelled"
            else str(result.get("status") or TaskStatus.failed)
        )
        attempt.finished_at = at
        attempt.error = result.get("error")
        attempt.reason = result.get("reason")
        attempt.exit_code = result.get("exit_code")
        samples = self.effects.samples
        samples.attempt_finished(attempt.status, attempt.reason, attempt.started_at, at)

    def _started(self, task: TaskRecord, run: RunRecord, event: TaskEvent, at: datetime) -> None:
        if task.status != TaskStatus.queued:
            return
        known = self.attempts.get((task.id, task.attempt))
        if known is not None and known.finished_at is not None:
            return  # a late "started" of an attempt already over (released, lost): fenced
        plan_timeout = task_timeout(self, task)
        task.status = TaskStatus.running
        task.started_at = at
        task.heartbeat_at = utcnow()
        task.worker = event.worker[:200]
        task.deadline_at = at + timedelta(seconds=plan_timeout) if plan_timeout else None
        attempt = self._attempt(task)
        attempt.status = TaskStatus.running
        attempt.started_at = at
        attempt.worker = task.worker
        self.effects.samples.task_started(task.ready_at or run.created_at, at)
        self.started_updates.append((task, task_update(task, run.job_id)))
        if run.status == RunStatus.queued:
            run.status = RunStatus.running
            run.started_at = at
            self.started_updates.append((run, run_update(run)))
        self._mark(task, advance=False)

    def finish(
        self, task: TaskRecord, result: dict[str, Any], at: datetime, *, worker: str | None = None
    ) -> None:
        """Record an attempt's result and decide: succeeded, retry, or failed."""
        if task.status not in ACTIVE:
            return
        ok = result.get("status") == "succeeded"
        reason = None if ok else str(result.get("reason") or "error")[:30]
        error = None if ok else str(result.get("error") or "failed")[:10_000]
        attempt = self._attempt(task)
        attempt.status = (
            TaskStatus.succeeded
            if ok
            else (TaskStatus.cancelled if reason == "cancelled" else TaskStatus.failed)
        )
        attempt.finished_at = at
        attempt.exit_code = result.get("exit_code")
        attempt.error = error
        attempt.reason = reason
        attempt.output = result.get("output")
        if worker and not attempt.worker:
            attempt.worker = worker[:200]
        self.effects.samples.attempt_finished(attempt.status, reason, attempt.started_at, at)
        task.error, task.reason = error, reason
        if ok:
            task.status = TaskStatus.succeeded
            task.output = result.get("output")
            task.finished_at = at
        elif reason == "lost" and self._lost_so_far(task) < MAX_LOST_ATTEMPTS:
            # Not the task's fault: run it again at once, outside its retry budget.
            task.status = TaskStatus.queued
            task.dispatched_at = None
            task.max_attempts += 1
            task.ready_at = utcnow()
            self.effects.due(task.ready_at)
        elif reason not in ("cancelled", "lost") and task.attempt < task.max_attempts:
            retry = task_plan(self, task).retry
            task.status = TaskStatus.queued
            task.dispatched_at = None
            task.ready_at = utcnow() + timedelta(seconds=retry.delay_before(task.attempt + 1))
            self.effects.due(task.ready_at)
        else:
            task.status = TaskStatus.cancelled if reason == "cancelled" else TaskStatus.failed
            task.finished_at = at
        self._mark(task)

    def _released(self, task: TaskRecord, at: datetime) -> None:
        # A worker shutting down handed the attempt back unrun: not the task's fault, so
        # it does not use up one of the task's attempts.
        attempt = self._attempt(task)
        attempt.status, attempt.finished_at, attempt.reason = "released", at, "released"
        self.effects.samples.attempt_finished("released", "released", attempt.started_at, at)
        task.status = TaskStatus.queued
        task.dispatched_at = None
        task.max_attempts += 1
        task.ready_at = utcnow()
        self.effects.due(task.ready_at)
        self._mark(task)

    async def settle_runs(self) -> None:
        """Close finished fan-out groups, advance every touched run's DAG, settle runs."""
        now = utcnow()
        await self._close_groups(now)
        for run_id in sorted(self.touched_runs):
            run = self.runs[run_id]
            if run.status in FINISHED_RUN:
                continue
            tasks = {t.name: t for t in self.run_tasks.get(run_id, [])}
            plan = self.plans.get(self.tenant_id, run.job_id, run.job_version)
            assert plan is not None
            before = {name: task.status for name, task in tasks.items()}
            advance = advance_run(plan, run, tasks, now=now, ready_at=now)
            for name, task in tasks.items():
                if task.status != before[name]:
                    self.changed[task.id] = task
            if advance.children:
                self.session.add_all(advance.children)
            if advance.queued:
                self.effects.due(now)
            self.effects.cancel.extend((t.id, t.attempt) for t in advance.stop)
            if advance.cancel_children:
                self.effects.cancel.extend(await _cancel_children(self.session, run, now))
            if advance.finished:
                self.effects.finished_runs.append(run)
                self.effects.samples.run_finished(run.status)

    async def _close_groups(self, now: datetime) -> None:
        """A group whose children have all finished takes their outcome and outputs."""
        parents = {
            t.parent_id
            for t in self.changed.values()
            if t.parent_id is not None and t.status in FINISHED_TASK
        }
        if not parents:
            return
        # The children's counts and outputs are read from the table: the ones this batch
        # finished must be there first.
        await self.write()
        repo = TaskRunRepository(self.session, self.tenant_id)
        for parent_id in parents:
            group = self.tasks.get(parent_id) if parent_id else None
            if group is None or group.status != TaskStatus.running:
                continue
            outcome = group_outcome(await repo.child_status_counts(group.id))
            if outcome is None and not self._fails_fast(group):
                continue
            children = await repo.children(group.id)
            group.status = outcome or TaskStatus.failed
            group.finished_at = now
            group.output = [child.output for child in children]
            if group.status == TaskStatus.failed:
                failed = [c.name for c in children if c.status == TaskStatus.failed]
                group.error = f"{len(failed)} of {len(children)} items failed: {failed[:5]}"
                group.reason = "items_failed"
            self._mark(group)

    def _fails_fast(self, group: TaskRecord) -> bool:
        """Under fail_fast a failed item fails its group at once when the group fails the
        run; waiting for its siblings would only delay the cancellation."""
        run = self.runs[group.run_id]
        plan = self.plans.get(self.tenant_id, run.job_id, run.job_version)
        assert plan is not None
        return (
            plan.failure_policy == "fail_fast"
            and plan.tasks[group.name].on_failure == "fail_run"
            and any(
                t.parent_id == group.id and t.status == TaskStatus.failed
                for t in self.changed.values()
            )
        )


async def _cancel_children(
    session: AsyncSession, run: RunRecord, now: datetime
) -> list[tuple[uuid.UUID, int]]:
    """fail_fast: end a run's unfinished fan-out children; return the in-flight ones."""
    rows = (
        await session.execute(
            text(
                "UPDATE task_runs SET status = 'cancelled', reason = 'fail_fast', "
                "finished_at = :now, explanation = 'the run failed (failure_policy fail_fast)' "
                "WHERE tenant_id = :tenant AND run_id = :run AND parent_id IS NOT NULL "
                "AND status IN ('pending', 'queued', 'running') "
                "RETURNING id, attempt, dispatched_at"
            ),
            {"tenant": run.tenant_id, "run": run.id, "now": now},
        )
    ).all()
    return [(row.id, row.attempt) for row in rows if row.dispatched_at is not None]


def plan_of(batch: _Batch, task: TaskRecord) -> RunPlan:
    run = batch.runs[task.run_id]
    plan = batch.plans.get(batch.tenant_id, run.job_id, run.job_version)
    assert plan is not None, "plans are loaded before events are applied"
    return plan


def task_plan(batch: _Batch, task: TaskRecord) -> TaskPlan:
    """The spec task a task run instantiates (a for_each child shares its group's)."""
    return plan_of(batch, task).tasks[plan_name(task.name)]


def task_timeout(batch: _Batch, task: TaskRecord) -> float | None:
    return task_plan(batch, task).timeout_seconds


async def _prepare(batch: _Batch, task_run_ids: set[uuid.UUID], *, whole_runs: bool = True) -> None:
    await batch.load(task_run_ids, whole_runs=whole_runs)
    for run in batch.runs.values():
        await load_plan(batch.session, batch.plans, batch.tenant_id, run.job_id, run.job_version)


async def apply_events(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    events: list[TaskEvent],
    plans: PlanCache,
    *,
    lost_before: datetime | None = None,
) -> Effects:
    """Apply one tenant's batch of worker events in the current transaction.

    ``lost_before``: a worker's report that an attempt was lost (it took over the entry
    of a worker that stopped answering) is applied only if the attempt's heartbeat is
    older than this; None (the engine has not listened long enough) ignores such reports.
    The engine's sweep applies the same rule from heartbeats, so nothing is missed.
    """
    ids = set()
    now = time.time()
    for event in events:
        observe_event_lag(event.kind, event.ts, now)
        try:
            ids.add(uuid.UUID(event.task_run_id))
        except ValueError:
            log.warning("engine.event.bad_task_id", tenant_id=str(tenant_id))
    batch = _Batch(session, await driver_connection(session), tenant_id, plans, lost_before)
    # Only an attempt's end can move a DAG on; a batch of starts, heartbeats and logs
    # reads just the tasks it names, not their runs' other tasks.
    ending = any(event.kind in ("finished", "released") for event in events)
    await _prepare(batch, ids, whole_runs=ending)
    for event in events:
        batch.apply(event)
    return await _flush(batch)


async def fail_tasks(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    failures: Iterable[tuple[uuid.UUID, int, str, str]],
    plans: PlanCache,
) -> Effects:
    """Fail task attempts the engine itself judged (timeout, lost): (id, attempt, reason, error).

    They go through the same retry policy as failures a worker reports.
    """
    failures = list(failures)
    batch = _Batch(session, await driver_connection(session), tenant_id, plans)
    await _prepare(batch, {f[0] for f in failures})
    now = utcnow()
    for task_run_id, attempt, reason, error in failures:
        task = batch.tasks.get(task_run_id)
        if task is None or task.attempt != attempt:
            continue
        if task.dispatched_at is not None:
            batch.effects.cancel.append((task.id, task.attempt))
        batch.finish(task, {"status": "failed", "reason": reason, "error": error}, now)
    return await _flush(batch)


async def _announce_finished(batch: _Batch) -> None:
    """Tell the domains above (job triggers, notifications) which runs this batch
    finished, in its transaction: they only record them (an outbox), nothing slow."""
    if batch.effects.finished_runs:
        finished = [
            FinishedRun(run.id, run.job_id, run.status, run.reason, run.finished_at or utcnow())
            for run in batch.effects.finished_runs
        ]
        await runs_finished.fire(batch.session, batch.tenant_id, finished)


async def _flush(batch: _Batch) -> Effects:
    await batch.settle_runs()
    # The changed task runs, runs and attempts, one set-based statement per table
    # (backend/engine/writes.py); the session flushes only what it holds (fan-out children).
    await batch.write()
    await _announce_finished(batch)
    await LogRepository(batch.session, batch.tenant_id).insert_many(batch.log_rows)
    await batch.session.flush()
    batch.effects.runs = batch.runs
    batch.effects.changed_tasks = list(batch.changed.values())
    # A start whose task or run has moved on within this batch is published before the
    # final state; one still running is published once, as the final state.
    moved_on = [update for item, update in batch.started_updates if item.status != "running"]
    batch.effects.updates = (
        moved_on
        + [
            task_update(task, batch.runs[task.run_id].job_id)
            for task in batch.changed.values()
            if task.run_id in batch.runs
        ]
        + [
            run_update(run)
            for run_id, run in batch.runs.items()
            if run.status != batch.run_status_before.get(run_id)
        ]
    )
    return batch.effects
