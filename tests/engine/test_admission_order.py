"""One fair order for every admission of a tenant (backend/engine/admission.py ``_CLAIM``):
the slot a finished task frees goes to the run with the fewest tasks in flight and, among
equal shares, to the task ready longest - also when the finishing step admits in the
transaction that made its own run's next task ready.

The test plays the worker (its tasks are on a queue no worker reads): which task the
engine dispatches into a freed slot is then decided by admission alone, not by timing.
"""

from __future__ import annotations

import uuid
from typing import Any

from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.engine.loop import Engine
from kernel.wire import keys
from kernel.wire.protocol import EVENT_FIELD
from tests.engine.helpers import start_and_finish
from tests.fixtures.database import all_rows
from tests.fixtures.factories import Account
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, python_task, trigger


async def set_quota(owner_engine: AsyncEngine, owner: Account, tasks: int) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("UPDATE tenants SET max_concurrent_tasks = :n WHERE id = :t"),
            {"n": tasks, "t": owner.tenant_id},
        )


async def tasks_of(owner_engine: AsyncEngine, owner: Account) -> dict[str, Any]:
    """The tenant's task runs (not the groups) by "<run id>/<name>"."""
    rows = await all_rows(
        owner_engine,
        "SELECT id, run_id, name, attempt, dispatched_at, status FROM task_runs "
        "WHERE tenant_id = :t AND NOT EXISTS "
        "(SELECT 1 FROM task_runs c WHERE c.tenant_id = :t AND c.parent_id = task_runs.id)",
        t=owner.tenant_id,
    )
    return {f"{row.run_id}/{row.name}": row for row in rows}


async def dispatched(
    owner_engine: AsyncEngine, owner: Account, count: int, *, after: Any = None
) -> set[str]:
    """Wait until ``after`` (a row of :func:`tasks_of`, whose attempt the test finished)
    has succeeded and exactly ``count`` of the tenant's tasks are dispatched and not
    started (the quota's worth); their keys (as :func:`tasks_of`)."""

    def settled(rows: dict[str, Any]) -> bool:
        if after is not None and rows[f"{after.run_id}/{after.name}"].status != "succeeded":
            return False
        return sum(r.dispatched_at is not None and r.status == "queued" for r in rows.values()) == (
            count
        )

    rows = await eventually(
        lambda: tasks_of(owner_engine, owner), settled, what=f"{count} tasks dispatched"
    )
    return {key for key, r in rows.items() if r.dispatched_at is not None and r.status == "queued"}


async def play_the_worker(redis: Redis, owner: Account, task: Any, output: Any = None) -> None:
    """What a worker reports for ``task`` (a row of :func:`tasks_of`): started, succeeded."""
    stream = keys.events_stream(str(owner.tenant_id))
    for event in start_and_finish(task, str(task.run_id), output):
        await redis.xadd(stream, {EVENT_FIELD: event.to_json()})


async def test_a_finished_tasks_successor_waits_behind_a_run_queued_before_it(
    client: AsyncClient,
    owner: Account,
    owner_engine: AsyncEngine,
    redis: Redis,
    running_engine: Engine,
) -> None:
    await set_quota(owner_engine, owner, 1)
    nobody = f"nobody-{uuid.uuid4().hex[:8]}"
    chain = await create_job(
        client, owner, [python_task("a"), python_task("b", depends_on=["a"])], queue=nobody
    )
    other = await create_job(client, owner, [python_task("only")], queue=nobody)
    chain_run = await trigger(client, owner, chain["id"])
    assert await dispatched(owner_engine, owner, 1) == {f"{chain_run['id']}/a"}
    other_run = await trigger(client, owner, other["id"])  # queued: the quota is full

    rows = await tasks_of(owner_engine, owner)
    a = rows[f"{chain_run['id']}/a"]
    await play_the_worker(redis, owner, a)
    # The slot "a" freed goes to the run queued before "b" became ready, not to "b" (the
    # finishing step that made "b" ready admits in the same transaction).
    assert await dispatched(owner_engine, owner, 1, after=a) == {f"{other_run['id']}/only"}
    rows = await tasks_of(owner_engine, owner)
    assert rows[f"{chain_run['id']}/b"].dispatched_at is None

    only = rows[f"{other_run['id']}/only"]
    await play_the_worker(redis, owner, only)
    assert await dispatched(owner_engine, owner, 1, after=only) == {f"{chain_run['id']}/b"}


async def test_a_run_with_nothing_in_flight_gets_the_next_slot_before_a_fan_out(
    client: AsyncClient,
    owner: Account,
    owner_engine: AsyncEngine,
    redis: Redis,
    running_engine: Engine,
) -> None:
    await set_quota(owner_engine, owner, 2)
    nobody = f"nobody-{uuid.uuid4().hex[:8]}"
    wide = await create_job(
        client,
        owner,
        [
            python_task("list"),
            python_task("each", depends_on=["list"], for_each="tasks.list.output"),
        ],
        queue=nobody,
    )
    small = await create_job(client, owner, [python_task("one")], queue=nobody)
    wide_run = await trigger(client, owner, wide["id"])
    await dispatched(owner_engine, owner, 1)
    rows = await tasks_of(owner_engine, owner)
    listing = rows[f"{wide_run['id']}/list"]
    await play_the_worker(redis, owner, listing, list(range(8)))
    first = await dispatched(owner_engine, owner, 2, after=listing)  # two children hold it
    small_run = await trigger(client, owner, small["id"])

    # A child finishes: its slot goes to the run with nothing in flight, whichever path
    # admits it (the finishing step or the admission loop), not to the fan-out's next.
    rows = await tasks_of(owner_engine, owner)
    child = rows[sorted(first)[0]]
    await play_the_worker(redis, owner, child)
    now = await dispatched(owner_engine, owner, 2, after=child)
    assert f"{small_run['id']}/one" in now, now
    assert len([key for key in now if key.startswith(wide_run["id"])]) == 1
