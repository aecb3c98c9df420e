"""``refresh_queue_statistics()`` (migration 0022), which the engine's sweep calls: the
runtime role may call it, it analyses the queue tables that changed by its threshold, and
two replicas never analyse at once (the second finds the advisory lock taken and does
nothing)."""

from __future__ import annotations

from datetime import datetime

from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import Account
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, python_task, trigger

QUEUE_TABLES = ["run_finish_outbox", "runs", "task_attempts", "task_runs"]
REFRESH = text("SELECT refresh_queue_statistics(:floor, :fraction)")
LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended('baton:queue-statistics', 0))")
ANALYSED_AT = text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'task_runs'")


async def _refresh(engine: AsyncEngine, floor: int, fraction: float = 0.0) -> list[str]:
    async with engine.begin() as conn:
        rows = await conn.execute(REFRESH, {"floor": floor, "fraction": fraction})
        return [str(row[0]) for row in rows.all()]


async def _analysed_at(engine: AsyncEngine) -> datetime | None:
    async with engine.connect() as conn:
        value: datetime | None = await conn.scalar(ANALYSED_AT)
        return value


async def test_changed_queue_tables_are_analysed_by_the_runtime_role(
    client: AsyncClient, owner: Account, runtime_engine: AsyncEngine, parked_queue: str
) -> None:
    job = await create_job(client, owner, [python_task("quick")], queue=parked_queue)
    await trigger(client, owner, job["id"])  # a run and its task run written
    # The write reaches the statistics views when its backend flushes them (within a
    # second): then a threshold of one changed row takes task_runs.
    await eventually(
        lambda: _refresh(runtime_engine, floor=1),
        lambda tables: "task_runs" in tables,
        what="task_runs analysed once it changed",
    )
    # A floor of zero takes every queue table, and only those.
    assert await _refresh(runtime_engine, floor=0) == QUEUE_TABLES
    # A threshold no table reaches analyses nothing.
    assert await _refresh(runtime_engine, floor=10**12) == []


async def test_a_replica_skips_the_analysis_another_is_running(
    runtime_engine: AsyncEngine,
) -> None:
    async with runtime_engine.connect() as holder:
        transaction = await holder.begin()
        await holder.execute(LOCK)  # another replica, analysing (the engine's sweep skips too)
        before = await _analysed_at(runtime_engine)
        assert await _refresh(runtime_engine, floor=0) == []
        assert await _analysed_at(runtime_engine) == before
        await transaction.rollback()
    assert await _refresh(runtime_engine, floor=0) == QUEUE_TABLES
