"""Live updates (SSE) show every state change even when a worker's "started" and "finished"
reach the engine in one batch: the intermediate "running" is not folded away."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.db import tenant_transaction
from backend.engine.events import apply_events
from backend.engine.loop import Engine
from kernel.dag.plan import PLANS
from kernel.wire.protocol import TaskEvent
from tests.fixtures.factories import Account
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, python_task, trigger


async def dispatched_task(owner_engine: AsyncEngine, run_id: str) -> Any:
    async with owner_engine.connect() as conn:
        return (
            await conn.execute(
                text("SELECT id, attempt, dispatched_at FROM task_runs WHERE run_id = :run"),
                {"run": uuid.UUID(run_id)},
            )
        ).one()


async def test_a_start_and_finish_in_one_batch_publish_running_then_succeeded(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    running_engine: Engine,
    owner_engine: AsyncEngine,
) -> None:
    # No worker reads this queue: the test plays the worker.
    job = await create_job(
        client, owner, [python_task("only")], queue=f"nobody-{uuid.uuid4().hex[:8]}"
    )
    run = await trigger(client, owner, job["id"])
    task = await eventually(
        lambda: dispatched_task(owner_engine, run["id"]),
        lambda row: row.dispatched_at is not None,
        what="the dispatch",
    )
    now = time.time()
    common = {"task_run_id": str(task.id), "run_id": run["id"], "attempt": task.attempt}
    events = [
        TaskEvent(kind="started", worker="w", ts=now, **common),
        TaskEvent(kind="finished", worker="w", ts=now, result={"status": "succeeded"}, **common),
    ]
    async with tenant_transaction(app.state.sessionmaker, owner.tenant_id) as session:
        effects = await apply_events(session, owner.tenant_id, events, PLANS)
    seen = [(u["type"], u["status"]) for u in effects.updates]
    assert seen == [
        ("task", "running"),
        ("run", "running"),
        ("task", "succeeded"),
        ("run", "succeeded"),
    ], seen
