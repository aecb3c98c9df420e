"""The reactor's sweep visits only the tenants with work: ``reactor_due_tenants()``
(migration 0021) names those with outbox rows, a notification due or a job with an SLA,
across tenants, for the runtime role, and leaves the caller's tenant scope as it was."""

from __future__ import annotations

from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import Account
from tests.runs.factories import create_job, python_task

DUE = text("SELECT reactor_due_tenants()")


async def test_only_tenants_with_work_are_swept(
    client: AsyncClient,
    owner: Account,
    stranger: Account,
    runtime_engine: AsyncEngine,
) -> None:
    await create_job(client, owner, [python_task("quick")], sla={"max_duration": "1h"})
    await create_job(client, stranger, [python_task("quick")])  # no SLA, nothing pending
    async with runtime_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(stranger.tenant_id)}
        )
        due = {row[0] for row in (await conn.execute(DUE)).all()}
        scope = await conn.scalar(text("SELECT current_setting('app.tenant_id', true)"))
    assert owner.tenant_id in due and stranger.tenant_id not in due
    assert scope == str(stranger.tenant_id)  # the caller's scope, restored

    # A row in the run-finished outbox (written by another process) makes a tenant due;
    # done in one transaction that rolls back, so no reactor ever sees the row.
    async with runtime_engine.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(
            text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(stranger.tenant_id)}
        )
        await conn.execute(
            text(
                "INSERT INTO run_finish_outbox (tenant_id, id, run_id, job_id, status, "
                "finished_at) VALUES (:t, gen_random_uuid(), gen_random_uuid(), "
                "gen_random_uuid(), 'succeeded', now())"
            ),
            {"t": stranger.tenant_id},
        )
        due = {row[0] for row in (await conn.execute(DUE)).all()}
        await transaction.rollback()
    assert stranger.tenant_id in due
