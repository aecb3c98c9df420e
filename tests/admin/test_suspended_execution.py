"""A suspended tenant runs nothing new: queued tasks wait, schedule ticks are skipped with
the reason; resuming starts what waited."""

from __future__ import annotations

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.db import commit, scope_to_tenant
from backend.schedules.firing import fire_due
from tests.admin.helpers import resume_url, suspend_url
from tests.fixtures.factories import Account, create_tenant, make_superuser
from tests.runs.factories import create_job, python_task, trigger, wait_for_run
from worker.runner import Worker


async def test_queued_work_waits_while_suspended_and_runs_after_resume(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine, running_worker: Worker
) -> None:
    admin = await create_tenant(client)
    await make_superuser(owner_engine, admin)
    job = await create_job(client, owner, [python_task("a")])
    # Due in two seconds; by then the tenant is suspended.
    run = await trigger(client, owner, job["id"], delay_seconds=2)
    assert (await client.post(suspend_url(owner.tenant_id), headers=admin.headers)).is_success
    # A witness: another tenant's run, due no earlier than ours. Once it has run, the engine
    # has held admission rounds after our run became ready.
    other = await create_tenant(client)
    other_job = await create_job(client, other, [python_task("a")])
    witness = await trigger(client, other, other_job["id"], delay_seconds=2)
    assert witness["run_at"] >= run["run_at"]
    assert (await wait_for_run(client, other, witness["id"]))["status"] == "succeeded"
    async with owner_engine.connect() as conn:
        status = (
            await conn.execute(text("SELECT status FROM runs WHERE id = :id"), {"id": run["id"]})
        ).scalar_one()
    assert status == "queued", "a suspended tenant's task started"

    assert (await client.post(resume_url(owner.tenant_id), headers=admin.headers)).is_success
    finished = await wait_for_run(client, owner, run["id"])
    assert finished["status"] == "succeeded"


async def test_schedule_ticks_of_a_suspended_tenant_are_skipped_with_the_reason(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine, app: FastAPI
) -> None:
    admin = await create_tenant(client)
    await make_superuser(owner_engine, admin)
    job = await create_job(
        client, owner, [python_task("a")], schedule={"cron": "* * * * *", "misfire": "fire_all"}
    )
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE schedules SET checked_until = now() - interval '130 seconds', "
                "next_due_at = now() - interval '130 seconds' WHERE job_id = :job"
            ),
            {"job": job["id"]},
        )
    assert (await client.post(suspend_url(owner.tenant_id), headers=admin.headers)).is_success
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        report, _ = await fire_due(session, app.state.redis, owner.tenant_id, fence=1)
        await commit(session)
    assert report.fired == 0 and report.skipped >= 2
    async with owner_engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT outcome, reason, run_id FROM schedule_ticks WHERE job_id = :job"),
                {"job": job["id"]},
            )
        ).all()
        runs = (
            await conn.execute(
                text("SELECT count(*) FROM runs WHERE job_id = :job"), {"job": job["id"]}
            )
        ).scalar_one()
    assert rows and all(r.outcome == "skipped" and r.reason == "tenant suspended" for r in rows)
    assert all(r.run_id is None for r in rows)
    assert runs == 0
