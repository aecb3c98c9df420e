"""schedules.service.schedules_of: the schedules of listed jobs, for the jobs page."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import FastAPI
from httpx import AsyncClient

from backend.core.db import scope_to_tenant
from backend.schedules import service
from tests.fixtures.factories import Account, principal_of
from tests.runs.factories import create_job, shell_task


async def test_schedules_of_listed_jobs(
    app: FastAPI, client: AsyncClient, owner: Account, stranger: Account
) -> None:
    daily = {"cron": "0 3 * * *", "timezone": "UTC"}
    scheduled = await create_job(client, owner, [shell_task("a", "true")], schedule=daily)
    paused = await create_job(
        client, owner, [shell_task("a", "true")], schedule={**daily, "paused": True}
    )
    manual = await create_job(client, owner, [shell_task("a", "true")])
    other = await create_job(client, stranger, [shell_task("a", "true")], schedule=daily)
    job_ids = [uuid.UUID(j["id"]) for j in (scheduled, paused, manual, other)]
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        found = await service.schedules_of(session, principal_of(owner), job_ids)
    assert set(found) == {uuid.UUID(scheduled["id"]), uuid.UUID(paused["id"])}
    row = found[uuid.UUID(scheduled["id"])]
    assert not row.paused and row.spec["cron"] == "0 3 * * *"
    assert row.next_due_at is not None and row.next_due_at > datetime.now(UTC)
    assert (row.next_due_at.hour, row.next_due_at.minute) == (3, 0)
    assert found[uuid.UUID(paused["id"])].paused
