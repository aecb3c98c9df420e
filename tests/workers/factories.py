"""Worker credentials through the public API, Redis clients that log in with them, and a
task run on a queue of their own."""

from __future__ import annotations

import uuid
from typing import Any

from httpx import AsyncClient
from redis.asyncio import Redis

from kernel.credential import WorkerCredential
from kernel.runtime.redis import create_redis
from tests.fixtures.factories import Account
from tests.runs.factories import create_job, python_task, trigger, wait_for_run


def unique_queue() -> str:
    """A queue no other test (nor the session's shared test worker) serves."""
    return f"hosted-{uuid.uuid4().hex[:10]}"


async def echo_on(client: AsyncClient, account: Account, queue: str) -> dict[str, Any]:
    """A one-task job on ``queue`` whose task returns 42, run; the run once finished
    (within 60 s)."""
    job = await create_job(
        client,
        account,
        [python_task("hello", "worker.builtins:echo", kwargs={"value": 42})],
        queue=queue,
    )
    run = await trigger(client, account, job["id"])
    return await wait_for_run(client, account, run["id"], timeout=60)


async def create_worker_credential(
    client: AsyncClient, account: Account, queue: str | None = None, **extra: Any
) -> dict[str, Any]:
    body = {"queue": queue or unique_queue(), "name": f"box-{uuid.uuid4().hex[:6]}", **extra}
    response = await client.post("/api/v1/workers/credentials", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def redis_as(credential: str, redis_url: str) -> Redis:
    """A client logged in as the credential's own Redis user, made as `baton worker` makes
    its own."""
    return create_redis(WorkerCredential.parse(credential).connection_url(redis_url))
