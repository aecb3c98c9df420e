"""The engine's reads of an events batch's rows, as records (``backend/engine/records.py``).

Raw asyncpg statements on the connection of the batch's transaction: one SQL text each,
so asyncpg prepares it once per connection and then only binds and executes. Every
statement carries the tenant predicate, as the repositories' do; row-level security,
set for the transaction, is the second wall (the engine connects as the runtime role).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import TypeVar

import asyncpg

from backend.engine.records import AttemptRecord, Record, RunRecord, TaskRecord

_R = TypeVar("_R", bound=Record)

_RUN_COLUMNS = ", ".join(RunRecord.COLUMNS)
_TASK_COLUMNS = ", ".join(TaskRecord.COLUMNS)
_ATTEMPT_COLUMNS = ", ".join(AttemptRecord.COLUMNS)

# The runs of the named task runs, locked in id order, in one round trip. ``= ANY(ARRAY(
# subquery))``: the ids come first, then the primary key finds the runs (an ``IN
# (subquery)`` may hash-join a scan of all the tenant's runs).
_LOCK_RUNS_OF_TASKS = f"""
SELECT {_RUN_COLUMNS} FROM runs
 WHERE tenant_id = $1
   AND id = ANY(ARRAY(SELECT run_id FROM task_runs WHERE tenant_id = $1 AND id = ANY($2::uuid[])))
 ORDER BY id FOR UPDATE
"""  # noqa: S608 - column names are constants
_RUNS = f"SELECT {_RUN_COLUMNS} FROM runs WHERE tenant_id = $1 AND id = ANY($2::uuid[])"  # noqa: S608
# A run's tasks of the spec itself (for_each children left out).
_TOP_LEVEL = f"""
SELECT {_TASK_COLUMNS} FROM task_runs
 WHERE tenant_id = $1 AND run_id = ANY($2::uuid[]) AND parent_id IS NULL
"""  # noqa: S608
_TASKS = f"SELECT {_TASK_COLUMNS} FROM task_runs WHERE tenant_id = $1 AND id = ANY($2::uuid[])"  # noqa: S608
_ATTEMPTS = f"""
SELECT {_ATTEMPT_COLUMNS} FROM task_attempts
 WHERE tenant_id = $1 AND task_run_id = ANY($2::uuid[])
"""  # noqa: S608


async def _records(
    conn: asyncpg.Connection,
    record: type[_R],
    statement: str,
    tenant_id: uuid.UUID,
    ids: Collection[uuid.UUID],
) -> list[_R]:
    return [record.from_row(row) for row in await conn.fetch(statement, tenant_id, list(ids))]


async def lock_runs_of_tasks(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, task_run_ids: Collection[uuid.UUID]
) -> list[RunRecord]:
    """The runs the task runs belong to, locked (``FOR UPDATE``) in id order."""
    return await _records(conn, RunRecord, _LOCK_RUNS_OF_TASKS, tenant_id, task_run_ids)


async def runs(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, run_ids: Collection[uuid.UUID]
) -> list[RunRecord]:
    """The runs, not locked."""
    return await _records(conn, RunRecord, _RUNS, tenant_id, run_ids)


async def top_level_tasks(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, run_ids: Collection[uuid.UUID]
) -> list[TaskRecord]:
    """The runs' task runs of the spec itself (``for_each`` children left out)."""
    return await _records(conn, TaskRecord, _TOP_LEVEL, tenant_id, run_ids)


async def tasks(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, task_run_ids: Collection[uuid.UUID]
) -> list[TaskRecord]:
    """The task runs by id."""
    return await _records(conn, TaskRecord, _TASKS, tenant_id, task_run_ids)


async def attempts(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, task_run_ids: Collection[uuid.UUID]
) -> list[AttemptRecord]:
    """Every attempt of the task runs."""
    return await _records(conn, AttemptRecord, _ATTEMPTS, tenant_id, task_run_ids)
