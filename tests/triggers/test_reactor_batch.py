"""The reactor reads a batch's jobs, notification rules and trigger edges once a batch of
finished runs, not once a run: the statements it sends for a tenant are counted with
SQLAlchemy's ``before_cursor_execute`` on the app's engine, those of the reactor's loop
only, and bounded by the number of batches (each batch ends with one ``DELETE`` of its
outbox rows)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import event, text

from backend.triggers.reactor import Reactor
from tests.fixtures.factories import Account
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, python_task, wait_for_run

RUNS = 24


def _in_reactor(task: asyncio.Task[Any] | None) -> bool:
    return task is not None and "Reactor.run" in getattr(task.get_coro(), "__qualname__", "")


async def test_a_batch_of_finished_runs_looks_its_jobs_up_once(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    running_reactor: Reactor,
    running_worker: object,
) -> None:
    job = await create_job(client, owner, [python_task("quick")])
    tenant = str(owner.tenant_id)
    seen: list[str] = []

    def record(*args: Any) -> None:
        statement, parameters = args[2], args[3]
        if _in_reactor(asyncio.current_task()) and tenant in str(parameters):
            seen.append(" ".join(str(statement).split()))

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        response = await client.post(
            f"/api/v1/jobs/{job['id']}/runs/batch",
            json={"runs": [{} for _ in range(RUNS)]},
            headers=owner.headers,
        )
        assert response.status_code == 201, response.text
        runs = response.json()["runs"]
        assert len(runs) == RUNS
        for run in runs:
            assert (await wait_for_run(client, owner, run["id"]))["status"] == "succeeded"

        def batches() -> int:
            return sum(s.startswith("DELETE FROM run_finish_outbox") for s in seen)

        await eventually(  # every finished run's outbox row consumed
            lambda: _outbox_rows(app, tenant),
            lambda left: left == 0 and batches() > 0,
            what="the reactor taking every finished run",
        )
    finally:
        event.remove(engine, "before_cursor_execute", record)
    taken = batches()
    assert 1 <= taken < RUNS  # several runs per batch: what the bound below is about
    lookups = {
        "jobs": [s for s in seen if s.startswith("SELECT jobs.")],
        "rules": [s for s in seen if "FROM notification_rules" in s],
        "edges": [s for s in seen if "-> 'triggers'" in s],
    }
    for name, statements in lookups.items():
        assert 1 <= len(statements) <= taken, (name, len(statements), taken)


async def _outbox_rows(app: FastAPI, tenant: str) -> int:
    async with app.state.engine.begin() as conn:
        await conn.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": tenant})
        return int(await conn.scalar(text("SELECT count(*) FROM run_finish_outbox")) or 0)
