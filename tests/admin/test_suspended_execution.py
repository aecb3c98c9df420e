"""A suspended tenant runs nothing new: queued tasks wait, schedule ticks are skipped with
the reason; resuming starts what waited."""

from __future__ import annotations

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.db import commit, scope_to_tenant
from backend.dispatch.signals import mark_tenant_due
from backend.schedules.firing import fire_due
from tests.admin.helpers import resume_url, suspend_url
from tests.fixtures.factories import Account, create_tenant, make_superuser
from tests.fixtures.schedules import ScheduledJob
from tests.runs.factories import create_job, python_task, trigger, wait_for_run
from worker.runner import Worker


async def test_queued_work_waits_while_suspended_and_runs_after_resume(
    client: AsyncClient,
    owner: Account,
    owner_engine: AsyncEngine,
    running_worker: Worker,
    app: FastAPI,
) -> None:
    admin = await create_tenant(client)
    await make_superuser(owner_engine, admin)
    job = await create_job(client, owner, [python_task("a")])
    # Due in an hour, so it cannot start before the tenant is suspended; then made due now.
    run = await trigger(client, owner, job["id"], delay_seconds=3600)
    assert (await client.post(suspend_url(owner.tenant_id), headers=admin.headers)).is_success
    async with owner_engine.begin() as conn:
        await conn.execute(text("UPDATE runs SET run_at = now() WHERE id = :id"), {"id": run["id"]})
        await conn.execute(
            text(
                "UPDATE task_runs SET ready_at = now() WHERE run_id = :id AND ready_at IS NOT NULL"
            ),
            {"id": run["id"]},
        )
    await mark_tenant_due(app.state.redis, owner.tenant_id)
    # A witness: another tenant's run, due after ours. Once it has run, the engine has held
    # admission rounds after our run became ready.
    other = await create_tenant(client)
    other_job = await create_job(client, other, [python_task("a")])
    witness = await trigger(client, other, other_job["id"])
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
    client: AsyncClient,
    owner: Account,
    owner_engine: AsyncEngine,
    app: FastAPI,
    scheduled_job: ScheduledJob,
) -> None:
    admin = await create_tenant(client)
    await make_superuser(owner_engine, admin)
    job = await scheduled_job(owner, cron="* * * * *", misfire="fire_all")
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE schedules SET checked_until = now() - interval '130 seconds', "
                "next_due_at = now() - interval '130 seconds' WHERE job_id = :job"
            ),
            {"job": job["id"]},
        )
    assert (await client.post(suspend_url(owner.tenant_id), headers=admin.headers)).is_success
    try:
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
    finally:  # the tenant resumed, scheduled_job can pause the schedule
        resumed = await client.post(resume_url(owner.tenant_id), headers=admin.headers)
        assert resumed.is_success, resumed.text
