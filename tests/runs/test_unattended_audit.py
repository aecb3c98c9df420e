"""Runs no user asked for (inbound webhooks, job-to-job triggers) are audited too.

``trigger_unattended`` writes a pending ``run.triggered`` event, attributed to a system
actor named after the trigger, in the transaction that creates the run; the sealer chains
it like any other. A run that is not created (an idempotency key seen before, a rolled
back transaction) leaves no event.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.db import tenant_transaction
from backend.plans.service import Limits
from backend.runs.service import trigger_unattended
from tests.audit.helpers import audit_rows, verify
from tests.fixtures.factories import Account
from tests.runs.factories import create_job, python_task
from tests.triggers.helpers import create_webhook, dumps

UNLIMITED = Limits("test")


async def _triggered(client: AsyncClient, account: Account) -> list[dict[str, Any]]:
    """The tenant's ``run.triggered`` events through the API (which seals first)."""
    response = await client.get(
        "/api/v1/audit", params={"action": "run.triggered"}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def _pending(engine: AsyncEngine, tenant_id: uuid.UUID) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM audit_pending WHERE tenant_id = :t"), {"t": tenant_id}
        )
    return int(count or 0)


async def test_a_webhook_delivery_audits_the_run_it_starts(
    client: AsyncClient, app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    job = await create_job(client, owner, [python_task("noop")])
    hook = await create_webhook(client, owner, job["id"])
    headers = {"Idempotency-Key": "delivery-1"}
    response = await client.post(hook["url"], content=dumps({"a": 1}), headers=headers)
    assert response.status_code == 201, response.text
    run_id = response.json()["run_id"]
    again = await client.post(hook["url"], content=dumps({"a": 1}), headers=headers)
    assert again.json()["run_id"] == run_id  # the same run: no second event

    [event] = await _triggered(client, owner)
    assert (event["actor_type"], event["actor_label"]) == ("system", "webhook")
    assert (event["target_type"], event["target_id"]) == ("run", run_id)
    assert event["details"]["trigger"] == "webhook"
    assert event["details"]["job_id"] == job["id"]
    assert event["details"]["idempotency_key"].endswith(":delivery-1")
    assert event["details"]["endpoint_id"] == hook["id"]  # the endpoint that started it
    assert uuid.UUID(event["details"]["delivery_id"])
    # Sealed into the tenant's chain, which still verifies.
    assert [r["action"] for r in await audit_rows(owner_engine, owner.tenant_id)].count(
        "run.triggered"
    ) == 1
    assert await _pending(owner_engine, owner.tenant_id) == 0
    report = await verify(app, owner.tenant_id)
    assert report.intact and report.unsealed == 0


async def test_a_job_to_job_trigger_audits_its_run_with_the_upstream_run(
    client: AsyncClient, app: FastAPI, owner: Account, redis: Redis
) -> None:
    job = await create_job(client, owner, [python_task("noop")])
    upstream_run = str(uuid.uuid4())
    async with tenant_transaction(app.state.sessionmaker, owner.tenant_id) as session:
        run, created = await trigger_unattended(
            session,
            redis,
            owner.tenant_id,
            uuid.UUID(job["id"]),
            params={"upstream": {"run_id": upstream_run, "job": "build", "status": "succeeded"}},
            idempotency_key=f"upstream:{upstream_run}",
            trigger="upstream",
            limits=UNLIMITED,
        )
    assert created
    [event] = await _triggered(client, owner)
    assert (event["actor_type"], event["actor_label"]) == ("system", "trigger")
    assert event["target_id"] == str(run.id)
    assert event["details"]["upstream_run_id"] == upstream_run
    assert event["details"]["trigger"] == "upstream"


async def test_the_caller_may_name_the_source_in_the_event(
    client: AsyncClient, app: FastAPI, owner: Account, redis: Redis
) -> None:
    job = await create_job(client, owner, [python_task("noop")])
    endpoint = str(uuid.uuid4())
    async with tenant_transaction(app.state.sessionmaker, owner.tenant_id) as session:
        run, _ = await trigger_unattended(
            session,
            redis,
            owner.tenant_id,
            uuid.UUID(job["id"]),
            params={},
            idempotency_key=None,
            trigger="webhook",
            limits=UNLIMITED,
            source={"endpoint_id": endpoint},
        )
    [event] = await _triggered(client, owner)
    assert event["target_id"] == str(run.id)
    assert event["details"]["endpoint_id"] == endpoint
    assert "idempotency_key" not in event["details"]


async def test_a_rolled_back_trigger_leaves_neither_run_nor_event(
    client: AsyncClient, app: FastAPI, owner: Account, owner_engine: AsyncEngine, redis: Redis
) -> None:
    job = await create_job(client, owner, [python_task("noop")])

    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned):
        async with tenant_transaction(app.state.sessionmaker, owner.tenant_id) as session:
            await trigger_unattended(
                session,
                redis,
                owner.tenant_id,
                uuid.UUID(job["id"]),
                params={},
                idempotency_key=None,
                trigger="webhook",
                limits=UNLIMITED,
            )
            raise Abandoned
    assert await _pending(owner_engine, owner.tenant_id) == 0
    assert await _triggered(client, owner) == []
    async with owner_engine.connect() as conn:
        runs = await conn.scalar(
            text("SELECT count(*) FROM runs WHERE job_id = :j"), {"j": uuid.UUID(job["id"])}
        )
    assert runs == 0
