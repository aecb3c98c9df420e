"""/api/v1/workers: credentials (shown once, stored hashed, revocable) and connected workers.

Each endpoint: anonymous, wrong role, another tenant's object (404), not found, valid,
bad input (422). The Redis users behind the credentials are real ACL users.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.settings import Settings
from kernel.credential import WorkerCredential
from kernel.wire import keys
from tests.fixtures.errors import assert_error
from tests.fixtures.execution import worker_config
from tests.fixtures.factories import Account, create_member
from tests.fixtures.waiting import eventually
from tests.workers.factories import create_worker_credential, redis_as, unique_queue
from worker.runner import Worker

CREDENTIALS = "/api/v1/workers/credentials"


async def acl_user_exists(redis: Redis, name: str) -> bool:
    return await redis.execute_command("ACL", "GETUSER", name) is not None


# ------------------------------------------------------------------------------ create


async def test_create_shows_the_credential_once_and_stores_only_a_hash(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine, redis: Redis
) -> None:
    queue = unique_queue()
    created = await create_worker_credential(client, owner, queue, expires_in_days=7)
    parsed = WorkerCredential.parse(created["credential"])

    assert (parsed.tenant_id, parsed.queue) == (str(owner.tenant_id), queue)
    assert parsed.redis_user == created["redis_user"]
    assert created["expires_at"] is not None and created["revoked_at"] is None
    async with owner_engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT * FROM worker_credentials WHERE id = :id"), {"id": created["id"]}
            )
        ).one()
    assert stored.secret_hash == hashlib.sha256(parsed.redis_password.encode()).hexdigest()
    assert parsed.redis_password not in str(tuple(stored))
    assert await acl_user_exists(redis, parsed.redis_user)
    listed = (await client.get(CREDENTIALS, headers=owner.headers)).json()
    assert [c["id"] for c in listed] == [created["id"]]
    assert "credential" not in listed[0] and parsed.redis_password not in str(listed)


async def test_create_moves_the_queue_off_the_shared_pool(
    client: AsyncClient, owner: Account, redis: Redis
) -> None:
    queue = unique_queue()
    await redis.sadd(keys.queue_tenants(queue), str(owner.tenant_id))
    await create_worker_credential(client, owner, queue)
    assert not await redis.sismember(keys.queue_tenants(queue), str(owner.tenant_id))


async def test_create_refuses_anonymous_and_roles_below_admin(
    client: AsyncClient, owner: Account
) -> None:
    body = {"queue": "default", "name": "box"}
    assert_error(await client.post(CREDENTIALS, json=body), 401, "unauthenticated")
    for role in ("editor", "operator", "viewer"):
        member = await create_member(client, owner, role)
        assert_error(
            await client.post(CREDENTIALS, json=body, headers=member.headers), 403, "forbidden"
        )
    admin = await create_member(client, owner, "admin")
    response = await client.post(CREDENTIALS, json=body, headers=admin.headers)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "body",
    [
        {"queue": "Not A Queue", "name": "box"},
        {"queue": "q*", "name": "box"},  # a glob character would widen the ACL pattern
        {"queue": "default", "name": ""},
        {"queue": "default"},
        {"queue": "default", "name": "box", "expires_in_days": 0},
        {"queue": "default", "name": "box", "expires_in_days": 4000},
        {"queue": "default", "name": "box", "extra": 1},
        {"queue": "x" * 64, "name": "box"},
    ],
)
async def test_create_refuses_bad_input(
    client: AsyncClient, owner: Account, body: dict[str, Any]
) -> None:
    assert_error(
        await client.post(CREDENTIALS, json=body, headers=owner.headers), 422, "validation_failed"
    )
    assert (await client.get(CREDENTIALS, headers=owner.headers)).json() == []


# -------------------------------------------------------------------------------- list


async def test_list_is_for_admins_and_shows_only_the_tenants_own(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    mine = await create_worker_credential(client, owner)
    await create_worker_credential(client, stranger)
    assert_error(await client.get(CREDENTIALS), 401, "unauthenticated")
    viewer = await create_member(client, owner, "viewer")
    assert_error(await client.get(CREDENTIALS, headers=viewer.headers), 403, "forbidden")
    listed = (await client.get(CREDENTIALS, headers=owner.headers)).json()
    assert [c["id"] for c in listed] == [mine["id"]]


# ------------------------------------------------------------------------------ revoke


async def test_revoke_removes_the_redis_user(
    client: AsyncClient, owner: Account, redis: Redis
) -> None:
    queue = unique_queue()
    created = await create_worker_credential(client, owner, queue)
    url = f"{CREDENTIALS}/{created['id']}"
    response = await client.delete(url, headers=owner.headers)
    assert response.status_code == 204, response.text

    assert not await acl_user_exists(redis, created["redis_user"])
    listed = (await client.get(CREDENTIALS, headers=owner.headers)).json()
    assert listed[0]["revoked_at"] is not None
    # The queue has no active credential left: the shared pool serves it again.
    assert await redis.sismember(keys.queue_tenants(queue), str(owner.tenant_id))
    assert (await client.delete(url, headers=owner.headers)).status_code == 204  # no-op


async def test_revoke_guards(client: AsyncClient, owner: Account, stranger: Account) -> None:
    created = await create_worker_credential(client, owner)
    url = f"{CREDENTIALS}/{created['id']}"
    assert_error(await client.delete(url), 401, "unauthenticated")
    operator = await create_member(client, owner, "operator")
    assert_error(await client.delete(url, headers=operator.headers), 403, "forbidden")
    assert_error(await client.delete(url, headers=stranger.headers), 404, "not_found")
    assert_error(
        await client.delete(f"{CREDENTIALS}/{uuid.uuid4()}", headers=owner.headers),
        404,
        "not_found",
    )
    assert_error(
        await client.delete(f"{CREDENTIALS}/not-a-uuid", headers=owner.headers),
        422,
        "validation_failed",
    )
    listed = (await client.get(CREDENTIALS, headers=owner.headers)).json()
    assert listed[0]["revoked_at"] is None


# --------------------------------------------------------------------- connected workers


async def test_connected_workers_show_the_tenants_own_worker(
    client: AsyncClient, settings: Settings, owner: Account, stranger: Account
) -> None:
    assert settings.redis_url
    created = await create_worker_credential(client, owner)
    parsed = WorkerCredential.parse(created["credential"])
    name = f"box-{uuid.uuid4().hex[:6]}"
    connection = redis_as(created["credential"], settings.redis_url)
    worker = Worker(
        connection,
        worker_config(
            name=name, queues=(parsed.queue,), tenant_id=parsed.tenant_id, heartbeat_seconds=0.1
        ),
    )
    task = asyncio.create_task(worker.run())
    try:

        async def hosted_workers() -> list[dict[str, Any]]:
            listed = (await client.get("/api/v1/workers", headers=owner.headers)).json()
            return [w for w in listed if w["hosted"]]

        hosted = await eventually(hosted_workers, what="the hosted worker listed")
        assert [(w["name"], w["queues"]) for w in hosted] == [(name, [parsed.queue])]
        assert hosted[0]["version"]
        theirs = (await client.get("/api/v1/workers", headers=stranger.headers)).json()
        assert all(w["name"] != name for w in theirs)
        assert all(not w["hosted"] for w in theirs)
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=10)
        await connection.aclose()


async def test_connected_workers_guards(client: AsyncClient, owner: Account) -> None:
    assert_error(await client.get("/api/v1/workers"), 401, "unauthenticated")
    editor = await create_member(client, owner, "editor")
    assert_error(await client.get("/api/v1/workers", headers=editor.headers), 403, "forbidden")
    assert (await client.get("/api/v1/workers", headers=owner.headers)).status_code == 200
