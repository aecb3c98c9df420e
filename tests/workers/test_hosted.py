"""Tenant-hosted workers against the real engine, API and Redis ACL users.

- revoking a credential disconnects its worker, which stops reading;
- an expired credential's Redis user is removed by the engine's sweep;
- `baton worker` with only a credential (production, no JWT secret, no database) runs a
  task end to end, and the shared pool is kept off that queue.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.settings import Settings
from backend.engine.loop import Engine
from kernel.credential import WorkerCredential
from kernel.wire import keys
from kernel.wire.protocol import EVENT_FIELD, TASK_FIELD, TaskMessage
from tests.fixtures.execution import (
    bare_env,
    start_worker_process,
    stop_worker_process,
    worker_config,
)
from tests.fixtures.factories import Account
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, python_task, trigger, wait_for_run
from tests.workers.factories import create_worker_credential, echo_on, redis_as, unique_queue
from worker.runner import Worker


async def clients_of(redis: Redis, user: str) -> int:
    listing = await redis.execute_command("CLIENT", "LIST")
    text_ = listing if isinstance(listing, str) else str(listing)
    return sum(f" user={user} " in f" {line} " for line in text_.splitlines())


def hosted_worker(credential: str, redis_url: str) -> tuple[Worker, Redis]:
    parsed = WorkerCredential.parse(credential)
    connection = redis_as(credential, redis_url)
    config = worker_config(
        name=f"hosted-{uuid.uuid4().hex[:6]}",
        queues=(parsed.queue,),
        tenant_id=parsed.tenant_id,
        heartbeat_seconds=0.2,
    )
    return Worker(connection, config), connection


async def test_a_revoked_credential_stops_its_worker(
    client: AsyncClient, settings: Settings, owner: Account, redis: Redis
) -> None:
    assert settings.redis_url
    created = await create_worker_credential(client, owner)
    user = created["redis_user"]
    worker, connection = hosted_worker(created["credential"], settings.redis_url)
    task = asyncio.create_task(worker.run())
    tenant = str(owner.tenant_id)
    stream = keys.queue_stream(tenant, created["queue"])
    try:
        # Reading: it takes a task from its tenant's stream and reports it finished.
        first = await redis.xadd(stream, {TASK_FIELD: _message(tenant, created["queue"])})

        async def reported() -> bool:
            events = await redis.xrange(keys.events_stream(tenant))
            return any('"finished"' in fields[EVENT_FIELD] for _, fields in events)

        await eventually(reported, what="the first task reported finished")
        response = await client.delete(
            f"/api/v1/workers/credentials/{created['id']}", headers=owner.headers
        )
        assert response.status_code == 204
        # The worker's loop ends, its connections are gone.
        await eventually(task.done, timeout=30, what="the revoked worker's loop ending")
        await task
        assert await clients_of(redis, user) == 0
        await redis.xadd(stream, {TASK_FIELD: _message(tenant, created["queue"])})
        (group,) = await redis.xinfo_groups(stream)
        assert (group["last-delivered-id"], group["pending"]) == (first, 0)  # nothing taken
        with pytest.raises(AuthenticationError):
            await connection.ping()
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=10)
        await connection.aclose()


def _message(tenant: str, queue: str) -> str:
    return TaskMessage(
        tenant_id=tenant,
        run_id=str(uuid.uuid4()),
        task_run_id=str(uuid.uuid4()),
        task_name="noop",
        attempt=1,
        spec={"name": "noop", "type": "python", "function": "worker.builtins:noop"},
        queue=queue,
    ).to_json()


async def test_the_engine_removes_an_expired_credentials_user(
    client: AsyncClient,
    settings: Settings,
    owner: Account,
    redis: Redis,
    owner_engine: AsyncEngine,
    running_engine: Engine,
) -> None:
    assert settings.redis_url
    created = await create_worker_credential(client, owner, expires_in_days=1)
    user = created["redis_user"]
    worker, connection = hosted_worker(created["credential"], settings.redis_url)
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: _has_clients(redis, user), what="the worker connected")
        # A day passes: the row and the expiry index say it has expired.
        async with owner_engine.begin() as conn:
            await conn.execute(
                text("UPDATE worker_credentials SET expires_at = now() WHERE id = :id"),
                {"id": created["id"]},
            )
        await redis.zadd(keys.worker_credential_expiry(), {user: time.time() - 1})

        async def removed() -> bool:
            return await redis.execute_command("ACL", "GETUSER", user) is None

        await eventually(removed, what="the expired Redis user removed")
        await asyncio.wait_for(asyncio.shield(task), timeout=15)
        listed = (await client.get("/api/v1/workers/credentials", headers=owner.headers)).json()
        assert listed[0]["id"] == created["id"] and listed[0]["revoked_at"] is None
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=10)
        await connection.aclose()


async def test_the_engine_restores_worker_users_when_redis_lost_them(
    client: AsyncClient,
    settings: Settings,
    owner: Account,
    redis: Redis,
    running_engine: Engine,
) -> None:
    assert settings.redis_url
    created = await create_worker_credential(client, owner)
    revoked = await create_worker_credential(client, owner)
    response = await client.delete(
        f"/api/v1/workers/credentials/{revoked['id']}", headers=owner.headers
    )
    assert response.status_code == 204
    # Redis restarted without its data or its ACL users: the engine's epoch is gone too.
    await redis.execute_command("ACL", "DELUSER", created["redis_user"])
    await redis.delete(keys.engine_epoch())

    async def restored() -> bool:
        return await redis.execute_command("ACL", "GETUSER", created["redis_user"]) is not None

    await eventually(restored, what="the Redis user recreated")
    connection = redis_as(created["credential"], settings.redis_url)
    try:
        assert await connection.ping()
    finally:
        await connection.aclose()
    assert await redis.execute_command("ACL", "GETUSER", revoked["redis_user"]) is None


async def _has_clients(redis: Redis, user: str) -> bool:
    return await clients_of(redis, user) > 0


def _credential_only_env(credential: str, home: Path) -> dict[str, str]:
    """Production, a credential, and nothing else of Baton's (no JWT secret, no database)."""
    return bare_env(home, BATON_ENVIRONMENT="production", BATON_WORKER_CREDENTIAL=credential)


async def test_a_worker_with_only_a_credential_runs_a_task_end_to_end(
    client: AsyncClient,
    settings: Settings,
    owner: Account,
    redis: Redis,
    running_engine: Engine,
    tmp_path: Path,
) -> None:
    queue = unique_queue()
    created = await create_worker_credential(client, owner, queue)
    process = start_worker_process(
        [sys.executable, "-c", "from backend.cli import app; app()", "worker"],
        _credential_only_env(created["credential"], tmp_path),
        tmp_path,
    )
    try:
        finished = await echo_on(client, owner, queue)
        assert finished["status"] == "succeeded", finished
        (task,) = finished["tasks"]
        assert task["output"] == 42
        assert task["worker"] and task["worker"].startswith("worker-")
        assert task["worker"] != "worker-test"  # not the session's shared test worker
        # The shared pool never discovered this queue of the tenant.
        assert not await redis.sismember(keys.queue_tenants(queue), str(owner.tenant_id))
    finally:
        output = await stop_worker_process(process)
    assert process.returncode == 0, output
    assert "worker.credential_refused" not in output


def test_baton_worker_refuses_a_damaged_credential(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from backend.cli import app; app()", "worker"],
        cwd=tmp_path,
        env=_credential_only_env("bwc_not-json", tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "worker credential is damaged" in result.stderr


async def test_the_shared_pool_leaves_a_hosted_queue_to_the_tenants_workers(
    client: AsyncClient,
    settings: Settings,
    owner: Account,
    redis: Redis,
    running_worker: Worker,
) -> None:
    """The session's shared worker serves `default`; once the tenant hosts `default` itself,
    its tasks there are run by its own worker only."""
    assert settings.redis_url and "default" in running_worker.config.queues
    created = await create_worker_credential(client, owner, "default")
    job = await create_job(client, owner, [python_task("mine", "worker.builtins:noop")])
    run = await trigger(client, owner, job["id"])
    stream = keys.queue_stream(str(owner.tenant_id), "default")

    async def dispatched() -> bool:
        return bool(await redis.exists(stream)) and await redis.xlen(stream) == 1

    await eventually(dispatched, what="the task in the queue stream")
    # Dispatched (the discovery set is updated in the same pipeline): not for the shared pool.
    assert not await redis.sismember(keys.queue_tenants("default"), str(owner.tenant_id))
    worker, connection = hosted_worker(created["credential"], settings.redis_url)
    task = asyncio.create_task(worker.run())
    try:
        finished = await wait_for_run(client, owner, run["id"], timeout=30)
        assert finished["status"] == "succeeded", finished
        assert [t["worker"] for t in finished["tasks"]] == [worker.name]
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=10)
        await connection.aclose()
