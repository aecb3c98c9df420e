"""runs.latest.last_runs: the newest run of each listed job, for the jobs page."""

from __future__ import annotations

import uuid

from fastapi import FastAPI
from httpx import AsyncClient

from backend.core.db import scope_to_tenant
from backend.runs import latest as service
from tests.fixtures.factories import Account, principal_of
from tests.runs.factories import create_job, shell_task, trigger


async def test_the_newest_run_of_each_job(
    app: FastAPI, client: AsyncClient, owner: Account, stranger: Account
) -> None:
    busy = await create_job(client, owner, [shell_task("a", "true")])
    idle = await create_job(client, owner, [shell_task("a", "true")])
    other = await create_job(client, stranger, [shell_task("a", "true")])
    for _ in range(3):
        newest = await trigger(client, owner, busy["id"])
    await trigger(client, stranger, other["id"])
    job_ids = [uuid.UUID(j["id"]) for j in (busy, idle, other)]
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        found = await service.last_runs(session, principal_of(owner), job_ids)
        assert await service.last_runs(session, principal_of(owner), []) == {}
    assert set(found) == {uuid.UUID(busy["id"])}  # never run: no entry; another tenant's: none
    assert str(found[uuid.UUID(busy["id"])].id) == newest["id"]
