"""Tenant-hosted workers against the real engine, API and Redis ACL users.

- revoking a credential disconnects its worker, which stops reading;
- when Redis fails during a revocation, revoking again or the engine's sweep removes the
  user (PostgreSQL is the truth) and the worker stops;
- an expired credential's Redis user is removed by the engine's sweep;
- `baton worker` with only a credential (production, no JWT secret, no database) runs a
  task end to end, and the shared pool is kept off that queue;
- such a worker opens a secret the real engine sealed for its tenant's queue, with the
  queue key its credential carries (it never holds the pool transit key).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.deps import get_redis
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
from tests.fixtures.streams import observe
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, python_task, shell_task, trigger, wait_for_run
from tests.secrets.helpers import create_secret, secret_name, secret_value
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
    events = await observe(redis, keys.events_stream(tenant))
    try:
        # Reading: it takes a task from its tenant's stream and reports it finished.
        first = await redis.xadd(stream, {TASK_FIELD: _message(tenant, created["queue"])})

        async def reported() -> bool:
            return any('"finished"' in fields[EVENT_FIELD] for fields in await events.read())

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


@asynccontextmanager
async def api_redis_without_acl_rights(app: FastAPI, admin: Redis) -> AsyncIterator[None]:
    """The API's Redis connection logs in as a user that may do everything but ACL
    commands: removing a worker's Redis user fails as a Redis outage would make it fail."""
    user, password = f"bt-noacl-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    rules = ("reset", "on", f">{password}", "~*", "&*", "+@all", "-acl")
    await admin.execute_command("ACL", "SETUSER", user, *rules)
    url = admin.get_connection_kwargs()
    limited = Redis(
        host=url["host"], port=url["port"], db=url.get("db", 0), username=user, password=password
    )
    app.dependency_overrides[get_redis] = lambda: limited
    try:
        yield
    finally:
        app.dependency_overrides.pop(get_redis, None)
        await limited.aclose()
        await admin.execute_command("ACL", "DELUSER", user)


async def _revoke_while_redis_fails(
    client: AsyncClient, app: FastAPI, redis: Redis, owner: Account, credential_id: str
) -> None:
    async with api_redis_without_acl_rights(app, redis):
        response = await client.delete(
            f"/api/v1/workers/credentials/{credential_id}", headers=owner.headers
        )
    # Committed, but the Redis user could not be removed: the caller is told so.
    assert response.status_code == 503, response.text
    listed = (await client.get("/api/v1/workers/credentials", headers=owner.headers)).json()
    assert next(c for c in listed if c["id"] == credential_id)["revoked_at"] is not None


async def test_revoking_again_removes_the_user_a_failed_revocation_left_alive(
    client: AsyncClient, app: FastAPI, settings: Settings, owner: Account, redis: Redis
) -> None:
    assert settings.redis_url
    created = await create_worker_credential(client, owner)
    worker, connection = hosted_worker(created["credential"], settings.redis_url)
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: _has_clients(redis, created["redis_user"]), what="connected")
        await _revoke_while_redis_fails(client, app, redis, owner, created["id"])
        response = await client.delete(
            f"/api/v1/workers/credentials/{created['id']}", headers=owner.headers
        )
        assert response.status_code == 204
        assert await redis.execute_command("ACL", "GETUSER", created["redis_user"]) is None
        await eventually(task.done, timeout=30, what="the revoked worker's loop ending")
        assert await clients_of(redis, created["redis_user"]) == 0
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=10)
        await connection.aclose()


async def test_the_engine_removes_the_user_a_failed_revocation_left_alive(
    client: AsyncClient,
    app: FastAPI,
    settings: Settings,
    owner: Account,
    redis: Redis,
    owner_engine: AsyncEngine,
    running_engine: Engine,
) -> None:
    assert settings.redis_url
    created = await create_worker_credential(client, owner)
    worker, connection = hosted_worker(created["credential"], settings.redis_url)
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: _has_clients(redis, created["redis_user"]), what="connected")
        await _revoke_while_redis_fails(client, app, redis, owner, created["id"])

        async def removed() -> bool:
            return await redis.execute_command("ACL", "GETUSER", created["redis_user"]) is None

        # No second DELETE: the engine's sweep finds the revoked row in PostgreSQL.
        await eventually(removed, what="the Redis user removed by the sweep")
        await eventually(task.done, timeout=30, what="the revoked worker's loop ending")
        assert await clients_of(redis, created["redis_user"]) == 0

        async def confirmed() -> bool:
            async with owner_engine.connect() as conn:
                at = await conn.scalar(
                    text("SELECT redis_removed_at FROM worker_credentials WHERE id = :id"),
                    {"id": created["id"]},
                )
            return at is not None

        await eventually(confirmed, what="the removal confirmed in PostgreSQL")
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

        async def removed() -> bool:
            return await redis.execute_command("ACL", "GETUSER", user) is None

        await eventually(removed, what="the expired Redis user removed")
        await eventually(task.done, timeout=30, what="the expired worker's loop ending")
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


async def test_a_worker_with_only_a_credential_opens_a_sealed_secret(
    client: AsyncClient,
    settings: Settings,
    owner: Account,
    redis: Redis,
    running_engine: Engine,
    tmp_path: Path,
) -> None:
    queue = unique_queue()
    created = await create_worker_credential(client, owner, queue)
    assert WorkerCredential.parse(created["credential"]).transit_keys  # its queue's keys
    name, value = secret_name("DEPLOY_TOKEN"), secret_value()
    await create_secret(client, owner, name, value)
    env = {
        **_credential_only_env(created["credential"], tmp_path),
        # The tenant's own machine, its own trusted tasks: shell, unsandboxed.
        "BATON_WORKER_ALLOW_SHELL": "true",
        "BATON_WORKER_SANDBOX": "false",
    }
    assert not any("TRANSIT" in key for key in env)  # no pool key: only the credential's
    process = start_worker_process(
        [sys.executable, "-c", "from backend.cli import app; app()", "worker"], env, tmp_path
    )
    try:
        # The output is the value's digest: the value itself would be masked.
        command = (
            'printf %s "$TOKEN" | sha256sum | cut -c1-64 > digest; '
            'printf \'{"sha256": "%s"}\' "$(cat digest)" > "$BATON_OUTPUT"'
        )
        reference = f"${{{{ secrets.{name} }}}}"
        job = await create_job(
            client, owner, [shell_task("use", command, env={"TOKEN": reference})], queue=queue
        )
        dispatched = await observe(redis, keys.queue_stream(str(owner.tenant_id), queue))
        run = await trigger(client, owner, job["id"])
        finished = await wait_for_run(client, owner, run["id"], timeout=60)
        assert finished["status"] == "succeeded", finished
        (task,) = finished["tasks"]
        assert task["output"] == {"sha256": hashlib.sha256(value.encode()).hexdigest()}
        assert task["worker"] and task["worker"] != "worker-test"
        # What travelled through Redis was ciphertext, sealed by the engine.
        (fields,) = await dispatched.read()
        assert value not in fields[TASK_FIELD]
        assert json.loads(fields[TASK_FIELD])["secrets"]["ciphertext"]
    finally:
        output = await stop_worker_process(process)
    assert process.returncode == 0, output
    assert value not in output
    assert "secrets could not be decrypted" not in output


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
