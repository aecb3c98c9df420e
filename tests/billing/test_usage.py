"""Metering per tenant per day (the meter's rollup) and GET /api/v1/usage."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.billing.metering import Meter, roll_up
from backend.core.settings import Settings
from backend.retention.service import prune
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_member
from tests.fixtures.waiting import eventually
from tests.plans.helpers import plan_for
from tests.runs.factories import create_job, python_task, trigger

URL = "/api/v1/usage"


async def _history(client: AsyncClient, account: Account, owner_engine: AsyncEngine) -> None:
    """Two runs; one task ran 50 seconds and logged one line of 11 bytes (as the engine
    writes them)."""
    job = await create_job(client, account, [python_task("a")])
    run = await trigger(client, account, job["id"], delay_seconds=3600)
    await trigger(client, account, job["id"], delay_seconds=3600)
    async with owner_engine.begin() as conn:
        task = (
            await conn.execute(
                text(
                    "UPDATE task_runs SET started_at = now() - interval '50 seconds',"
                    " finished_at = now() WHERE run_id = :run RETURNING id"
                ),
                {"run": run["id"]},
            )
        ).scalar_one()
        await conn.execute(
            text(
                "INSERT INTO task_logs (tenant_id, task_run_id, attempt, seq, stream, line,"
                " logged_at)"
                " VALUES (:t, :task, 1, 1, 'stdout', 'hello world', now())"
            ),
            {"t": account.tenant_id, "task": task},
        )


def _today(report: dict[str, Any]) -> dict[str, Any]:
    """Today's row (the pass writes yesterday's too, when there was usage)."""
    today = datetime.now(UTC).date().isoformat()
    rows = [day for day in report["days"] if day["day"] == today]
    assert len(rows) == 1, (today, report)
    [row] = rows
    return dict(row)


async def test_usage_anonymous(client: AsyncClient) -> None:
    assert_error(await client.get(URL), 401, "unauthenticated")


async def test_usage_bad_month(client: AsyncClient, owner: Account) -> None:
    for month in ("2026-13", "26-01", "x"):
        response = await client.get(URL, params={"month": month}, headers=owner.headers)
        assert_error(response, 422, "validation_failed")


async def test_rollup_counts_runs_task_seconds_log_bytes_and_api_requests(
    app: FastAPI, client: AsyncClient, owner: Account, stranger: Account, owner_engine: AsyncEngine
) -> None:
    await _history(client, owner, owner_engine)
    viewer = await create_member(client, owner, "viewer")
    state = app.state
    await roll_up(state.sessionmaker, state.redis, tenants=[owner.tenant_id, stranger.tenant_id])
    response = await client.get(URL, headers=viewer.headers)
    assert response.status_code == 200, response.text
    report = response.json()
    today = _today(report)
    assert (today["runs"], today["task_seconds"], today["log_bytes"]) == (2, 50, 11)
    assert today["api_requests"] == 4  # the job, two triggers, the member: before the pass
    assert report["totals"]["runs"] == 2
    limits = {item["name"]: item for item in report["limits"]}
    assert limits["runs_per_month"]["used"] == 2
    assert limits["task_seconds_per_month"]["used"] == 50
    assert limits["members"]["used"] == 2
    # Another tenant's usage is its own.
    theirs = (await client.get(URL, headers=stranger.headers)).json()
    assert all(day["runs"] == 0 for day in theirs["days"])


async def test_a_repeated_pass_counts_nothing_twice(
    app: FastAPI, client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    await _history(client, owner, owner_engine)
    state = app.state
    await roll_up(state.sessionmaker, state.redis, tenants=[owner.tenant_id])
    first = _today((await client.get(URL, headers=owner.headers)).json())
    await roll_up(state.sessionmaker, state.redis, tenants=[owner.tenant_id])
    second = _today((await client.get(URL, headers=owner.headers)).json())
    assert (second["runs"], second["task_seconds"], second["log_bytes"]) == (2, 50, 11)
    assert first["runs"] == second["runs"]
    assert second["api_requests"] >= first["api_requests"]  # the GETs in between count


async def test_a_past_month_has_no_live_limits(client: AsyncClient, owner: Account) -> None:
    response = await client.get(URL, params={"month": "2020-01"}, headers=owner.headers)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["days"] == []
    assert report["period_start"].startswith("2020-01-01")
    limits = {item["name"]: item for item in report["limits"]}
    assert limits["runs_per_month"]["used"] == 0
    assert limits["members"]["used"] is None


async def test_the_meter_loop_rolls_up_until_stopped(
    app: FastAPI, client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    await _history(client, owner, owner_engine)
    meter = Meter(app.state.sessionmaker, app.state.redis, interval=0.2)
    running = asyncio.create_task(meter.run())

    async def today_runs() -> int:
        report = (await client.get(URL, headers=owner.headers)).json()
        return int(_today(report)["runs"]) if report["days"] else 0

    await eventually(today_runs, lambda runs: runs == 2, what="the meter's rollup")
    meter.stop()
    await running


async def test_the_retention_purges_logs_past_the_plans_retention(
    app: FastAPI,
    client: AsyncClient,
    settings: Settings,
    superuser: Account,
    owner: Account,
    owner_engine: AsyncEngine,
) -> None:
    await plan_for(client, superuser, owner, log_retention_days=2)
    await _history(client, owner, owner_engine)  # one line logged now
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO task_logs (tenant_id, task_run_id, attempt, seq, stream, line,"
                " logged_at) SELECT tenant_id, task_run_id, 1, 2, 'stdout', 'old',"
                " now() - interval '3 days' FROM task_logs WHERE tenant_id = :t"
            ),
            {"t": owner.tenant_id},
        )
    hosted = settings.model_copy(update={"billing": "manual"})
    state = app.state
    await prune(state.sessionmaker, hosted, tenants=[owner.tenant_id])
    async with owner_engine.connect() as conn:
        lines = (
            await conn.execute(
                text("SELECT line FROM task_logs WHERE tenant_id = :t"), {"t": owner.tenant_id}
            )
        ).scalars()
        assert list(lines) == ["hello world"]
    # On-prem (the configuration sets no retention) nothing is purged.
    report = await prune(state.sessionmaker, settings, tenants=[owner.tenant_id])
    assert report.log_lines == 0
