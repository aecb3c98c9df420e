"""Admission: move ready task runs into the tenant's dispatch streams, within its quota.

Per tenant, admission is serialised by a transaction-level advisory lock (so two engine
replicas cannot both fill the same free slots) and picks rows with ``FOR UPDATE SKIP
LOCKED`` (so they never dispatch the same task). Dispatching bumps the attempt number: the
message carries it, and results of any other attempt are ignored.

Across tenants the engine runs deficit round robin (:class:`FairShare`): each tenant with
due work earns ``quantum x weight`` admissions per round, so a tenant with 50,000 ready
tasks gets its share and no more, and a tenant with one task is served in the next round.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.db import driver_connection
from backend.core.models import utcnow
from backend.core.settings import Settings
from backend.engine import reads
from backend.engine.events import load_plan
from backend.engine.records import RunRecord
from backend.runs.models import plan_name
from backend.secrets.dispatch import seal_task_secrets
from backend.tenants.models import Tenant, TenantStatus
from kernel.dag.plan import PlanCache
from kernel.wire.protocol import TaskMessage

# Which ready tasks to dispatch, and in which order: one fair order for every admission
# of a tenant (the admission loop's and the finishing step's alike), decided in one
# statement from the rows alone - no rotation state in the engine, so it holds across
# replicas, restarts and the two paths that admit. A task's place is
#   (tasks its run has in flight + its turn among its run's ready tasks, ready_at, ...):
# the next free slot goes to the run with the fewest tasks in flight (a 10,000-item
# fan-out holding the quota cannot keep a run with none from its first slot), and among
# runs with equal shares to the task that has been ready longest (a chain's successor,
# ready just now, waits behind a run queued before it).
# The runs considered, never O(backlog):
# - ready_runs: runs with ready work in run id order (time-ordered: the order they were
#   queued; a skip scan over the ready index), until :room of them have nothing in flight
#   (then no run with something in flight can win a slot: a run with none outranks it) -
#   :room steps plus one for each run passed that has tasks in flight (at most the quota);
# - longest: the runs of the :span tasks ready longest (the ready_at index), so that an
#   older run's just-ready step does not take the place of a run that has waited.
# Up to :room ready tasks of each such run are ranked, a run's tasks in flight counted on
# the in-flight index (migration 0022); the outer UPDATE re-checks every row (the
# tenant's admission is serialised by an advisory lock as well), inserts the attempt rows
# and says when the tenant next has ready work - all in one round trip.
# ``$2`` (now) is the engine's clock at the claim, not the transaction's start (``now()``): a
# claim in the transaction that made a task ready must see it, and ready_at is stamped by
# the same clock (trigger, retry backoff, the DAG).
# $1 the tenant, $2 now, $3 the room, $4 the span (``LONGEST_SPAN`` x the room).
_CLAIM = """
    WITH RECURSIVE ready_runs(run_id, idle) AS (
        SELECT f.run_id, (NOT EXISTS (
                   SELECT 1 FROM task_runs b
                    WHERE b.tenant_id = $1 AND b.run_id = f.run_id
                      AND b.status IN ('queued', 'running') AND b.dispatched_at IS NOT NULL
               ))::int
          FROM (SELECT run_id FROM task_runs
                 WHERE tenant_id = $1 AND status = 'queued' AND dispatched_at IS NULL
                   AND ready_at <= $2
                 ORDER BY run_id LIMIT 1) f
        UNION ALL
        SELECT n.run_id, r.idle + (NOT EXISTS (
                   SELECT 1 FROM task_runs b
                    WHERE b.tenant_id = $1 AND b.run_id = n.run_id
                      AND b.status IN ('queued', 'running') AND b.dispatched_at IS NOT NULL
               ))::int
          FROM ready_runs r
          CROSS JOIN LATERAL (
              SELECT t.run_id FROM task_runs t
               WHERE t.tenant_id = $1 AND t.status = 'queued'
                 AND t.dispatched_at IS NULL AND t.ready_at <= $2
                 AND t.run_id > r.run_id
               ORDER BY t.run_id LIMIT 1) n
         WHERE r.idle < $3
    ),
    first_runs AS MATERIALIZED (
        SELECT run_id FROM ready_runs
        UNION
        SELECT run_id FROM (
            SELECT run_id FROM task_runs
             WHERE tenant_id = $1 AND status = 'queued' AND dispatched_at IS NULL
               AND ready_at <= $2
             ORDER BY ready_at LIMIT $4) longest
    ),
    candidates AS MATERIALIZED (
        SELECT c.id, c.run_id, c.ready_at, c.map_index,
               i.tasks
                 + row_number() OVER (PARTITION BY c.run_id ORDER BY c.ready_at, c.map_index)
                 AS share
          FROM first_runs f
          CROSS JOIN LATERAL (
              SELECT count(*) AS tasks FROM task_runs b
               WHERE b.tenant_id = $1 AND b.run_id = f.run_id
                 AND b.status IN ('queued', 'running') AND b.dispatched_at IS NOT NULL) i
          CROSS JOIN LATERAL (
              SELECT id, run_id, ready_at, map_index FROM task_runs
               WHERE tenant_id = $1 AND run_id = f.run_id AND status = 'queued'
                 AND dispatched_at IS NULL AND ready_at <= $2
               ORDER BY ready_at, map_index
               LIMIT $3) c
    ),
    picked AS MATERIALIZED (
        SELECT id, row_number() OVER (ORDER BY share, ready_at, run_id, map_index) AS place
          FROM candidates ORDER BY share, ready_at, run_id, map_index LIMIT $3
    ),
    claimed AS (
        UPDATE task_runs AS t
           SET dispatched_at = now(), attempt = t.attempt + 1
          FROM picked
         WHERE t.tenant_id = $1 AND t.id = picked.id
           AND t.status = 'queued' AND t.dispatched_at IS NULL
        RETURNING t.id, t.run_id, t.name, t.attempt, t.queue, t.item, picked.place
    ), attempts AS (
        INSERT INTO task_attempts (tenant_id, task_run_id, attempt, run_id, status)
        SELECT $1, id, attempt, run_id, 'dispatched' FROM claimed
        ON CONFLICT (tenant_id, task_run_id, attempt) DO NOTHING
    ), next_ready AS (
        -- What _NEXT_READY would say after this claim (the statement's snapshot still
        -- shows the claimed rows undispatched: they are skipped). A walk of the ready_at
        -- index that stops at the first row not claimed, not an aggregate over the backlog.
        SELECT (SELECT r.ready_at FROM task_runs r
                 WHERE r.tenant_id = $1 AND r.status = 'queued'
                   AND r.dispatched_at IS NULL AND r.ready_at IS NOT NULL
                   AND r.id NOT IN (SELECT id FROM claimed)
                 ORDER BY r.ready_at LIMIT 1) AS next_ready
    )
    SELECT c.id, c.run_id, c.name, c.attempt, c.queue, c.item, n.next_ready
      FROM next_ready n LEFT JOIN claimed c ON true
     ORDER BY c.place
    """
# How many runs of the longest-ready tasks the claim considers beside its run-id walk, as
# a multiple of the room: a bound on the claim's cost, not on fairness between runs
# (every run is reached by the walk in its turn).
LONGEST_SPAN = 4
_IN_FLIGHT = """
    SELECT count(*) FROM task_runs
     WHERE tenant_id = $1 AND status IN ('queued', 'running') AND dispatched_at IS NOT NULL
"""
# The tenant's admission lock, and custom plans for the claim that follows in the same
# transaction, whatever the transaction's plan_cache_mode was (the finishing step runs with
# reused plans: backend/engine/loop.py). A generic plan of the claim reads the backlog.
_TRY_LOCK = """
SELECT pg_try_advisory_xact_lock(hashtextextended('admit:' || $1::text, 0)),
       set_config('plan_cache_mode', 'force_custom_plan', true)
"""
_LOCK = """
SELECT pg_advisory_xact_lock(hashtextextended('admit:' || $1::text, 0)),
       set_config('plan_cache_mode', 'force_custom_plan', true)
"""
_NEXT_READY = text(
    """
    SELECT min(ready_at) FROM task_runs
     WHERE tenant_id = :tenant AND status = 'queued' AND dispatched_at IS NULL
    """
)


async def refresh_queue_statistics(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    """Analyse the queue tables that changed enough since their last analysis (migration
    0022): the claim's index probes are planned from those statistics, and autovacuum may
    leave a new installation's tables unanalysed for a minute or more. The tables analysed.
    """
    async with sessionmaker() as session, session.begin():
        rows = await session.execute(text("SELECT refresh_queue_statistics()"))
        return [str(row[0]) for row in rows.all()]


async def next_ready_at(session: AsyncSession, tenant_id: uuid.UUID) -> datetime | None:
    """When the earliest of the tenant's queued, undispatched tasks is (or was) ready."""
    result = await session.execute(_NEXT_READY, {"tenant": tenant_id})
    return cast("datetime | None", result.scalar_one())


@dataclass
class Admission:
    messages: list[TaskMessage]
    next_due: datetime | None  # when this tenant next has admissible work (None: nothing)
    saturated: bool  # the quota is full; finishing tasks will wake the tenant again


def quota_of(
    tenant: Tenant | None, settings: Settings, plan_limits: Mapping[str, int | None] | None = None
) -> tuple[int, int]:
    """(max concurrent tasks, weight): the tenant's own values, else its plan's
    (``plan_limits``, from ``backend.plans``; without them the configuration's), else the
    defaults in settings. A suspended tenant may start nothing (its running tasks finish;
    its queued ones wait for the resume)."""
    if tenant is not None and tenant.status != TenantStatus.active:
        return 0, tenant.weight or settings.tenant_weight
    if plan_limits is not None:
        plan = plan_limits
    else:
        plan = settings.plan_limits.get(tenant.plan, {}) if tenant is not None else {}
    own_limit = tenant.max_concurrent_tasks if tenant is not None else None
    own_weight = tenant.weight if tenant is not None else None
    return (
        own_limit or plan.get("max_concurrent_tasks") or settings.tenant_max_concurrent_tasks,
        own_weight or plan.get("weight") or settings.tenant_weight,
    )


async def admit(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    plans: PlanCache,
    *,
    max_concurrent: int,
    limit: int,
    settings: Settings,
    try_lock: bool = False,
    held: Mapping[uuid.UUID, RunRecord] | None = None,
) -> Admission | None:
    """Claim up to ``limit`` ready tasks that fit the quota, in the tenant's fair order
    (:data:`_CLAIM`); build their messages (the secrets they reference sealed for the
    worker pool), in that order.

    ``try_lock``: do not wait for the tenant's admission lock; None if another transaction
    holds it. The engine admits this way inside the transaction that records finished
    tasks, which already holds row locks: waiting there could deadlock with an admission
    that holds the lock, and the admission holding it will see the freed slots anyway.
    The tasks that transaction made ready get no precedence: they take their place in the
    same order as every other ready task of the tenant.

    ``held``: runs the transaction has read already (the finishing step's), not read again.
    """
    # Raw statements on the transaction's connection (backend/engine/reads.py says why).
    conn = await driver_connection(session)
    if try_lock:
        if not await conn.fetchval(_TRY_LOCK, str(tenant_id)):
            return None
    else:
        await conn.execute(_LOCK, str(tenant_id))
    in_flight = int(await conn.fetchval(_IN_FLIGHT, tenant_id))
    room = min(max_concurrent - in_flight, limit)
    if room <= 0:
        return Admission([], None, saturated=True)
    replies = await conn.fetch(_CLAIM, tenant_id, utcnow(), room, room * LONGEST_SPAN)
    claimed = [row for row in replies if row["id"] is not None]
    next_due: datetime | None = replies[0]["next_ready"]
    messages: list[TaskMessage] = []
    if claimed:
        runs = await _runs_of(conn, tenant_id, {row["run_id"] for row in claimed}, held or {})
        for row in claimed:
            run = runs[row["run_id"]]
            plan = await load_plan(session, plans, tenant_id, run.job_id, run.job_version)
            task = plan.tasks[plan_name(row["name"])]
            messages.append(
                TaskMessage(
                    tenant_id=str(tenant_id),
                    run_id=str(row["run_id"]),
                    task_run_id=str(row["id"]),
                    task_name=row["name"],
                    attempt=row["attempt"],
                    spec=task.spec,
                    params=run.params,
                    timeout_seconds=task.timeout_seconds,
                    queue=row["queue"],
                    item=row["item"],
                )
            )
        messages = await seal_task_secrets(session, settings, tenant_id, messages)
    if len(claimed) == room and room == limit and not try_lock:
        # Perhaps more is ready: the fair round comes back (an admission in the finishing
        # step goes by the claim's answer instead, so as not to wake the round for nothing).
        return Admission(messages, utcnow(), saturated=False)
    if len(claimed) == room < limit:
        return Admission(messages, None, saturated=True)
    return Admission(messages, next_due, saturated=False)


async def _runs_of(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    run_ids: set[uuid.UUID],
    held: Mapping[uuid.UUID, RunRecord],
) -> dict[uuid.UUID, RunRecord]:
    """The claimed tasks' runs. Admitting in the transaction that finished their
    predecessors, the caller holds them already: no round trip for those."""
    runs = {run_id: held[run_id] for run_id in run_ids if run_id in held}
    missing = sorted(run_ids - runs.keys())
    if missing:
        runs.update({r.id: r for r in await reads.runs(conn, tenant_id, missing)})
    return runs


class FairShare:
    """Deficit round robin over tenants with due work."""

    def __init__(self, quantum: int) -> None:
        self.quantum = quantum
        self.deficit: dict[uuid.UUID, int] = {}
        self.ring: deque[uuid.UUID] = deque()

    def add(self, tenant_id: uuid.UUID) -> None:
        if tenant_id not in self.deficit:
            self.deficit[tenant_id] = 0
            self.ring.append(tenant_id)

    def next_turn(self, weight_of: dict[uuid.UUID, int]) -> tuple[uuid.UUID, int] | None:
        """The next tenant and how many tasks it may admit this turn."""
        if not self.ring:
            return None
        tenant_id = self.ring.popleft()
        self.deficit[tenant_id] += self.quantum * weight_of.get(tenant_id, 1)
        return tenant_id, self.deficit[tenant_id]

    def used(self, tenant_id: uuid.UUID, admitted: int, *, still_due: bool) -> None:
        if still_due:
            self.deficit[tenant_id] -= admitted
            self.ring.append(tenant_id)
        else:
            # An idle tenant banks no credit (DRR resets an emptied queue's deficit).
            self.deficit.pop(tenant_id, None)
