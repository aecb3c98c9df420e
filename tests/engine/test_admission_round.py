"""An admission round carries out several tenants' turns at once (real PostgreSQL and Redis).

The engines here are not running and each has a Redis database of its own, so only the
round under test admits through them. The runs are triggered for an hour from now (no
running engine of the suite admits them) and made ready by hand just before the round.
Each turn's real admission is wrapped in a probe that counts the turns in flight together.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import text

from backend.core.db import tenant_transaction
from backend.core.settings import Settings
from backend.engine.admission import Admission
from backend.engine.loop import Engine
from kernel.wire import keys
from tests.fixtures.factories import Account, create_tenant
from tests.runs.factories import create_job, python_task, trigger

TENANTS = 4


@pytest.fixture
async def ready_tenants(
    client: AsyncClient, app: FastAPI, private_redis: Redis
) -> AsyncIterator[list[Account]]:
    """Tenants with one ready task each (on a queue nobody serves), due in the private
    Redis database; their runs cancelled afterwards (dispatched into a database that is
    then flushed, they would look like dispatches Redis lost to any engine's reconciler)."""
    owners: list[Account] = []
    runs: list[tuple[Account, str]] = []
    for _ in range(TENANTS):
        owner = await create_tenant(client)
        job = await create_job(
            client, owner, [python_task("t")], queue=f"nobody-{uuid.uuid4().hex[:8]}"
        )
        run = await trigger(client, owner, job["id"], delay_seconds=3600)
        async with tenant_transaction(app.state.sessionmaker, owner.tenant_id) as session:
            await session.execute(
                text("UPDATE task_runs SET ready_at = now() WHERE run_id = :run"),
                {"run": run["id"]},
            )
        await private_redis.zadd(keys.engine_due(), {str(owner.tenant_id): time.time() - 1})
        owners.append(owner)
        runs.append((owner, run["id"]))
    yield owners
    for owner, run_id in runs:
        cancel = await client.post(f"/api/v1/runs/{run_id}/cancel", headers=owner.headers)
        assert cancel.status_code == 200, cancel.text


def probe(
    engine: Engine, fail_for: uuid.UUID | None = None
) -> tuple[list[uuid.UUID], dict[str, int]]:
    """Count the engine's turns in flight together (the real admission inside); the
    tenant ``fail_for``'s turn fails before admitting."""
    real: Callable[[uuid.UUID, int, int], Awaitable[Admission]] = engine._admit_tenant
    called: list[uuid.UUID] = []
    flight = {"now": 0, "most": 0}

    async def admit_tenant(tenant_id: uuid.UUID, max_concurrent: int, allowance: int) -> Any:
        called.append(tenant_id)
        flight["now"] += 1
        flight["most"] = max(flight["most"], flight["now"])
        try:
            # pacing: a turn stays in flight until the others of its batch have started
            await asyncio.sleep(0.05)
            if tenant_id == fail_for:
                raise ConnectionError("lost the database")
            return await real(tenant_id, max_concurrent, allowance)
        finally:
            flight["now"] -= 1

    engine._admit_tenant = admit_tenant  # type: ignore[method-assign]
    return called, flight


async def dispatched(app: FastAPI, owner: Account) -> bool:
    async with tenant_transaction(app.state.sessionmaker, owner.tenant_id) as session:
        found = await session.execute(
            text("SELECT dispatched_at IS NOT NULL FROM task_runs WHERE tenant_id = :t"),
            {"t": owner.tenant_id},
        )
        return bool(found.scalar_one())


@pytest.mark.parametrize("width", [1, TENANTS])
async def test_a_round_carries_out_its_turns_a_few_at_a_time(
    width: int,
    ready_tenants: list[Account],
    app: FastAPI,
    engine_settings: Settings,
    private_redis: Redis,
) -> None:
    owners = ready_tenants
    settings = engine_settings.model_copy(update={"engine_admission_concurrency": width})
    engine = Engine(settings, app.state.sessionmaker, private_redis, name=f"engine-round-{width}")
    called, flight = probe(engine)
    assert await engine.admission_round() == TENANTS
    assert sorted(called) == sorted(o.tenant_id for o in owners)  # one turn each
    assert flight["most"] == width
    assert all([await dispatched(app, owner) for owner in owners])
    assert not engine.fair.ring  # nothing left due: every tenant left the ring


async def test_a_failed_turn_backs_out_and_the_others_of_its_batch_are_admitted(
    ready_tenants: list[Account], app: FastAPI, engine_settings: Settings, private_redis: Redis
) -> None:
    owners = ready_tenants
    settings = engine_settings.model_copy(update={"engine_admission_concurrency": TENANTS})
    engine = Engine(settings, app.state.sessionmaker, private_redis, name="engine-round-fails")
    failing = owners[1]
    called, _ = probe(engine, fail_for=failing.tenant_id)
    with pytest.raises(ConnectionError):
        await engine.admission_round()
    assert len(called) == TENANTS
    for owner in owners:
        assert await dispatched(app, owner) is (owner is not failing)
    # the failed turn left the ring without credit; a resync will mark its tenant due again
    assert failing.tenant_id not in engine.fair.ring
    assert failing.tenant_id not in engine.fair.deficit
    assert engine._resync_wanted
