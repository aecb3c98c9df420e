"""Retention removes exactly what is older than the plan keeps: settled runs (with their
task runs, attempts and log lines), log lines and schedule ticks - never the newest run of
a job, never a run still in flight, nothing of another tenant; and the audit log is cut
behind a signed checkpoint so its chain still verifies."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.audit.service import checkpoint_keys, verify_chain
from backend.core.db import scope_to_tenant
from backend.core.models import utcnow
from backend.core.settings import Settings
from backend.retention.service import prune, prune_tenant
from tests.audit.helpers import head_seq, tamper
from tests.fixtures.factories import Account, create_tenant
from tests.plans.helpers import plan_for
from tests.runs.factories import create_job, python_task, trigger

DAYS = 7


async def _run(
    client: AsyncClient,
    owner_engine: AsyncEngine,
    account: Account,
    job_id: str,
    *,
    age_days: float,
    status: str = "succeeded",
) -> str:
    """A run of ``job_id`` created ``age_days`` ago in ``status``, with an attempt and a
    log line of that age."""
    run = await trigger(client, account, job_id, delay_seconds=3600)
    final = status in ("succeeded", "failed", "cancelled")
    async with owner_engine.begin() as conn:
        params = {"run": run["id"], "age": timedelta(days=age_days), "status": status}
        await conn.execute(
            text(
                "UPDATE runs SET status = :status, created_at = now() - CAST(:age AS interval),"
                " finished_at = CASE WHEN CAST(:final AS boolean)"
                " THEN now() - CAST(:age AS interval) END WHERE id = :run"
            ),
            {**params, "final": final},
        )
        task = (
            await conn.execute(
                text(
                    "UPDATE task_runs SET status = :status, attempt = 1"
                    " WHERE run_id = :run RETURNING id, tenant_id"
                ),
                params,
            )
        ).one()
        await conn.execute(
            text(
                "INSERT INTO task_attempts (tenant_id, task_run_id, attempt, run_id, status)"
                " VALUES (:t, :task, 1, :run, :status)"
            ),
            {"t": task.tenant_id, "task": task.id, "run": run["id"], "status": status},
        )
        await conn.execute(
            text(
                "INSERT INTO task_logs (tenant_id, task_run_id, attempt, seq, stream, line,"
                " logged_at)"
                " VALUES (:t, :task, 1, 1, 'stdout', 'line', now() - CAST(:age AS interval))"
            ),
            {"t": task.tenant_id, "task": task.id, "age": timedelta(days=age_days)},
        )
    return str(run["id"])


async def _tick(
    owner_engine: AsyncEngine, account: Account, job_id: str, *, age_days: float
) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO schedule_ticks (tenant_id, job_id, scheduled_for, wall_time,"
                " outcome) VALUES (:t, :job, now() - CAST(:age AS interval), 'x', 'missed')"
            ),
            {"t": account.tenant_id, "job": job_id, "age": timedelta(days=age_days)},
        )


async def _count(owner_engine: AsyncEngine, table: str, tenant_id: uuid.UUID) -> int:
    async with owner_engine.connect() as conn:
        result = await conn.execute(
            text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"),
            {"t": tenant_id},
        )
        return int(result.scalar_one())


async def _runs(owner_engine: AsyncEngine, tenant_id: uuid.UUID) -> set[str]:
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id FROM runs WHERE tenant_id = :t"), {"t": tenant_id}
        )
        return {str(row.id) for row in rows}


async def test_retention_removes_exactly_what_is_older_than_it_keeps(
    app: FastAPI, client: AsyncClient, settings: Settings, owner_engine: AsyncEngine
) -> None:
    account = await create_tenant(client)
    other = await create_tenant(client)
    job = (await create_job(client, account, [python_task("a")]))["id"]
    lone = (await create_job(client, account, [python_task("a")]))["id"]
    old_ok = await _run(client, owner_engine, account, job, age_days=30)
    old_failed = await _run(client, owner_engine, account, job, age_days=20, status="failed")
    old_running = await _run(client, owner_engine, account, job, age_days=25, status="running")
    recent = await _run(client, owner_engine, account, job, age_days=6)
    newest_old = await _run(client, owner_engine, account, lone, age_days=40)  # its job's newest
    await _tick(owner_engine, account, job, age_days=10)
    await _tick(owner_engine, account, job, age_days=1)
    other_job = (await create_job(client, other, [python_task("a")]))["id"]
    others = {await _run(client, owner_engine, other, other_job, age_days=30) for _ in range(2)}
    await _tick(owner_engine, other, other_job, age_days=10)

    report = await prune_tenant(app.state.sessionmaker, settings, account.tenant_id, DAYS)

    assert (report.runs, report.ticks) == (2, 1)
    assert await _runs(owner_engine, account.tenant_id) == {old_running, recent, newest_old}
    assert old_ok not in await _runs(owner_engine, account.tenant_id)
    assert old_failed not in await _runs(owner_engine, account.tenant_id)
    # Task runs and attempts went with their runs; log lines older than the retention went
    # too (also those of the kept old runs: log lines have the same retention).
    assert await _count(owner_engine, "task_runs", account.tenant_id) == 3
    assert await _count(owner_engine, "task_attempts", account.tenant_id) == 3
    assert await _count(owner_engine, "task_logs", account.tenant_id) == 1  # the recent run's
    assert await _count(owner_engine, "schedule_ticks", account.tenant_id) == 1
    # Nothing of the other tenant, though just as old.
    assert await _runs(owner_engine, other.tenant_id) == others
    assert await _count(owner_engine, "task_logs", other.tenant_id) == 2
    assert await _count(owner_engine, "schedule_ticks", other.tenant_id) == 1
    # A second pass finds nothing more; no retention removes nothing.
    again = await prune_tenant(app.state.sessionmaker, settings, account.tenant_id, DAYS)
    assert (again.runs, again.log_lines, again.ticks) == (0, 0, 0)
    forever = await prune_tenant(app.state.sessionmaker, settings, other.tenant_id, None)
    assert (forever.runs, forever.log_lines, forever.ticks) == (0, 0, 0)


async def test_the_pass_applies_each_tenants_plan(
    app: FastAPI,
    client: AsyncClient,
    settings: Settings,
    superuser: Account,
    owner_engine: AsyncEngine,
) -> None:
    hosted = settings.model_copy(update={"billing": "manual"})
    short = await create_tenant(client)
    long = await create_tenant(client)
    await plan_for(client, superuser, short, log_retention_days=2)
    await plan_for(client, superuser, long, log_retention_days=30)
    runs = {}
    for account in (short, long):
        job = (await create_job(client, account, [python_task("a")]))["id"]
        old = await _run(client, owner_engine, account, job, age_days=5)
        runs[account.tenant_id] = (old, await _run(client, owner_engine, account, job, age_days=0))
    await prune(app.state.sessionmaker, hosted, tenants=[short.tenant_id, long.tenant_id])
    assert await _runs(owner_engine, short.tenant_id) == {runs[short.tenant_id][1]}
    assert await _runs(owner_engine, long.tenant_id) == set(runs[long.tenant_id])


async def _verify(app: FastAPI, settings: Settings, tenant_id: uuid.UUID) -> tuple[bool, str]:
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, tenant_id)
        report = await verify_chain(
            session, tenant_id, checkpoint_keys=checkpoint_keys(settings.secrets_keks)
        )
        await session.rollback()
    return report.intact, f"{report.reason} at {report.broken_seq}"


async def test_the_audit_log_is_cut_behind_a_signed_checkpoint(
    app: FastAPI, client: AsyncClient, settings: Settings, owner_engine: AsyncEngine
) -> None:
    account = await create_tenant(client)
    other = await create_tenant(client)
    for _ in range(3):
        await create_job(client, account, [python_task("a")])
    head = await head_seq(owner_engine, account.tenant_id)
    assert head >= 4
    other_head = await head_seq(owner_engine, other.tenant_id)

    # Ten days on, under a one-day audit retention: everything but the head is old.
    audited = settings.model_copy(update={"audit_retention_days": 1})
    later = utcnow() + timedelta(days=10)
    report = await prune_tenant(app.state.sessionmaker, audited, account.tenant_id, None, now=later)
    assert report.audit_events == head - 1
    async with owner_engine.connect() as conn:
        kept = (
            await conn.execute(
                text("SELECT seq FROM audit_events WHERE tenant_id = :t"),
                {"t": account.tenant_id},
            )
        ).scalars()
        assert list(kept) == [head]
    assert await _verify(app, settings, account.tenant_id) == (True, "None at None")
    # The chain goes on from the cut; the other tenant's log is untouched.
    await create_job(client, account, [python_task("a")])
    assert await _verify(app, settings, account.tenant_id) == (True, "None at None")
    assert await head_seq(owner_engine, other.tenant_id) == other_head
    assert (await _verify(app, settings, other.tenant_id))[0]

    # A checkpoint nobody signed (or someone edited) does not make a cut chain verify.
    await tamper(
        owner_engine,
        "UPDATE audit_checkpoints SET prev_hash = repeat('0', 64) WHERE tenant_id = :t",
        t=account.tenant_id,
    )
    intact, why = await _verify(app, settings, account.tenant_id)
    assert not intact and why.startswith("checkpoint signature does not match"), why


async def test_a_cut_without_a_checkpoint_is_a_missing_event(
    app: FastAPI, client: AsyncClient, settings: Settings, owner_engine: AsyncEngine
) -> None:
    account = await create_tenant(client)
    await create_job(client, account, [python_task("a")])
    await tamper(
        owner_engine,
        "DELETE FROM audit_events WHERE tenant_id = :t AND seq = 1",
        t=account.tenant_id,
    )
    intact, why = await _verify(app, settings, account.tenant_id)
    assert not intact and why == "event missing at 1", why


async def test_the_cut_function_refuses_another_tenants_chain(
    app: FastAPI, client: AsyncClient, owner_engine: AsyncEngine
) -> None:
    mine = await create_tenant(client)
    theirs = await create_tenant(client)
    await create_job(client, theirs, [python_task("a")])
    head = await head_seq(owner_engine, theirs.tenant_id)
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, mine.tenant_id)
        with pytest.raises(DBAPIError, match="not the transaction's tenant"):
            await session.execute(
                text("SELECT audit_cut(:t, 2, now() + interval '1 day', 'dev', 'forged')"),
                {"t": theirs.tenant_id},
            )
        await session.rollback()
    assert await head_seq(owner_engine, theirs.tenant_id) == head
    async with owner_engine.connect() as conn:
        first = await conn.execute(
            text("SELECT min(seq) FROM audit_events WHERE tenant_id = :t"),
            {"t": theirs.tenant_id},
        )
        assert first.scalar_one() == 1
