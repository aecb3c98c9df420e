"""The events batch's set-based writes (backend/engine/writes.py): a replayed batch changes
nothing, an attempt whose row is missing is written by the upsert, and a column another
transaction changed meanwhile (admission's dispatch) is not overwritten."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.db import driver_connection, tenant_transaction
from backend.engine import reads
from backend.engine.events import apply_events
from backend.engine.loop import Engine
from backend.engine.writes import write_changes
from kernel.dag.plan import PLANS
from tests.engine.helpers import dispatched_unserved, start_and_finish
from tests.fixtures.database import all_rows, one_row
from tests.fixtures.factories import Account
from tests.runs.factories import create_job, python_task, trigger


async def attempts_of(owner_engine: AsyncEngine, task_id: uuid.UUID) -> list[Any]:
    return await all_rows(
        owner_engine,
        "SELECT attempt, status, started_at, finished_at, worker, output "
        "FROM task_attempts WHERE task_run_id = :id ORDER BY attempt",
        id=task_id,
    )


async def test_a_replayed_batch_changes_nothing_and_counts_one_success(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    running_engine: Engine,
    owner_engine: AsyncEngine,
) -> None:
    # The test plays the worker, and replays its events as an engine that died between
    # the commit and the acknowledgement would see them again.
    run, task = await dispatched_unserved(client, owner, owner_engine)
    events = start_and_finish(task, run["id"], {"n": 1})
    async with tenant_transaction(app.state.sessionmaker, owner.tenant_id) as session:
        first = await apply_events(session, owner.tenant_id, events, PLANS)
    assert [r.status for r in first.finished_runs] == ["succeeded"]
    before = await attempts_of(owner_engine, task.id)
    async with tenant_transaction(app.state.sessionmaker, owner.tenant_id) as session:
        again = await apply_events(session, owner.tenant_id, events, PLANS)
    assert again.finished_runs == [] and again.updates == []
    after = await attempts_of(owner_engine, task.id)
    assert after == before
    assert [(a.attempt, a.status, a.output) for a in after] == [
        (task.attempt, "succeeded", {"n": 1})
    ]
    row = await one_row(
        owner_engine,
        "SELECT status, output, started_at, finished_at FROM task_runs WHERE id = :id",
        id=task.id,
    )
    assert (row.status, row.output) == ("succeeded", {"n": 1})
    assert row.started_at is not None and row.finished_at is not None


async def test_an_attempt_whose_row_is_missing_is_written_with_its_outcome(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    running_engine: Engine,
    owner_engine: AsyncEngine,
) -> None:
    run, task = await dispatched_unserved(client, owner, owner_engine)
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM task_attempts WHERE task_run_id = :id"), {"id": task.id}
        )
    async with tenant_transaction(app.state.sessionmaker, owner.tenant_id) as session:
        await apply_events(session, owner.tenant_id, start_and_finish(task, run["id"], [1]), PLANS)
    rows = await attempts_of(owner_engine, task.id)
    assert [(a.attempt, a.status, a.worker, a.output) for a in rows] == [
        (task.attempt, "succeeded", "w", [1])
    ]
    assert rows[0].started_at is not None and rows[0].finished_at is not None


async def test_a_dispatch_committed_meanwhile_is_not_overwritten(
    client: AsyncClient, owner: Account, app: FastAPI, owner_engine: AsyncEngine
) -> None:
    # Due in an hour: no engine admits it before this test dispatches it.
    job = await create_job(client, owner, [python_task("only")])
    run = await trigger(client, owner, job["id"], delay_seconds=3600)
    async with tenant_transaction(app.state.sessionmaker, owner.tenant_id) as session:
        conn = await driver_connection(session)
        [task] = await reads.top_level_tasks(conn, owner.tenant_id, [uuid.UUID(run["id"])])
        assert task.dispatched_at is None and task.attempt == 0
        task.explanation = "changed by the batch"
        # Meanwhile admission (another transaction, not under the run's lock) dispatches it.
        async with owner_engine.begin() as other:
            await other.execute(
                text(
                    "UPDATE task_runs SET dispatched_at = now(), attempt = attempt + 1 "
                    "WHERE id = :id"
                ),
                {"id": task.id},
            )
        await write_changes(conn, owner.tenant_id, tasks=[task])
        assert task.changed() == frozenset()  # written: a second write sends nothing
    row = await one_row(
        owner_engine,
        "SELECT attempt, dispatched_at, explanation FROM task_runs WHERE id = :id",
        id=task.id,
    )
    assert row.attempt == 1 and row.dispatched_at is not None
    assert row.explanation == "changed by the batch"


async def test_a_record_writes_only_the_columns_it_changed_and_only_once(
    client: AsyncClient, owner: Account, app: FastAPI, owner_engine: AsyncEngine
) -> None:
    job = await create_job(client, owner, [python_task("only")])
    run = await trigger(client, owner, job["id"], delay_seconds=3600)
    async with tenant_transaction(app.state.sessionmaker, owner.tenant_id) as session:
        conn = await driver_connection(session)
        [task] = await reads.top_level_tasks(conn, owner.tenant_id, [uuid.UUID(run["id"])])
        task.output = {"kept": [1, 2]}
        task.status = task.status  # set to the value it had: not a change
        assert task.changed() == frozenset({"output"})
        await write_changes(conn, owner.tenant_id, tasks=[task])
        # Another writer changes the row; the record, already written, does not undo it.
        await conn.execute("UPDATE task_runs SET output = '1'::jsonb WHERE id = $1", task.id)
        await write_changes(conn, owner.tenant_id, tasks=[task])
    row = await one_row(owner_engine, "SELECT output FROM task_runs WHERE id = :id", id=task.id)
    assert row.output == 1
