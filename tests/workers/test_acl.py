"""Redis itself enforces each role's access: real ACL users on the test Redis.

A tenant-hosted worker's user (made by the API for a credential) reaches its tenant's keys
for its queue and nothing else; the shared pool's user cannot run admin commands; the
engine's user manages worker users but cannot wipe or reconfigure Redis.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from backend.core.settings import Settings
from backend.dispatch.signals import mark_tenant_due, publish_cancel
from backend.workers.acl import (
    TenantWorkerUser,
    provision_roles,
    remove_tenant_worker_user,
    set_tenant_worker_user,
)
from kernel.credential import WorkerCredential
from kernel.runtime.redis import create_redis
from kernel.wire import keys
from kernel.wire.protocol import EVENT_FIELD, TASK_FIELD, TaskMessage
from tests.chaos.cluster import RedisServer
from tests.fixtures.execution import worker_config
from tests.fixtures.factories import Account
from tests.fixtures.waiting import eventually
from tests.workers.factories import create_worker_credential, redis_as
from worker.runner import Worker


async def test_a_tenant_worker_user_reaches_what_a_worker_needs(
    client: AsyncClient, settings: Settings, owner: Account
) -> None:
    assert settings.redis_url
    created = await create_worker_credential(client, owner)
    tenant, queue = str(owner.tenant_id), created["queue"]
    worker = redis_as(created["credential"], settings.redis_url)
    try:
        stream = keys.queue_stream(tenant, queue)
        await worker.xgroup_create(stream, keys.WORKERS_GROUP, id="0", mkstream=True)
        assert await worker.xreadgroup(keys.WORKERS_GROUP, "w1", {stream: ">"}, count=1) == []
        await worker.xadd(keys.events_stream(tenant), {"event": "{}"})
        await worker.set(keys.tenant_worker_heartbeat(tenant, "w1"), "{}", ex=5)
        await worker.zadd(keys.tenant_workers(tenant), {"w1": 1.0})
        assert await worker.exists(keys.cancelled_attempt(tenant, "t1", 1)) == 0
        pubsub = worker.pubsub()
        await pubsub.subscribe(keys.tenant_cancel_channel(tenant))
        confirmed = await pubsub.get_message(timeout=5.0)
        assert confirmed is not None and confirmed["type"] == "subscribe"
        await pubsub.aclose()
    finally:
        await worker.aclose()


async def key_permissions(redis: Redis) -> bool:
    """Redis 7 has selectors and read-only/write-only key patterns; on 6.2 (the embedded
    development server, which tests fall back to) those keys are granted read-write."""
    version = str((await redis.info("server"))["redis_version"])
    return int(version.split(".")[0]) >= 7


async def test_a_tenant_worker_cannot_touch_another_tenants_keys(
    client: AsyncClient, settings: Settings, owner: Account, stranger: Account, redis: Redis
) -> None:
    assert settings.redis_url
    queue = "shared-name"
    created = await create_worker_credential(client, owner, queue)
    await create_worker_credential(client, stranger, queue)
    other = str(stranger.tenant_id)
    worker = redis_as(created["credential"], settings.redis_url)
    refused = [
        worker.xrange(keys.queue_stream(other, queue)),
        worker.xreadgroup(keys.WORKERS_GROUP, "w1", {keys.queue_stream(other, queue): ">"}),
        worker.set(keys.tenant_worker_heartbeat(other, "w1"), "{}"),
        worker.exists(keys.cancelled_attempt(other, "t1", 1)),
        worker.xadd(keys.events_stream(other), {"event": "{}"}),
        worker.xgroup_create(keys.queue_stream(other, queue), "g", mkstream=True),
        # its own tenant, but not what a worker needs: another queue is not its own, live
        # updates and scheduler leases are the engine's
        worker.xrange(keys.events_stream(str(owner.tenant_id))),
        worker.xrange(keys.queue_stream(str(owner.tenant_id), "other-queue")),
        worker.xadd(keys.updates_stream(str(owner.tenant_id)), {"x": "1"}),
        worker.get(keys.scheduler_lease(str(owner.tenant_id))),
        # the shared pool's global keys
        worker.smembers(keys.queue_tenants(queue)),
        worker.set(keys.worker_heartbeat("w1"), "{}"),
        worker.publish(keys.cancel_channel(), "{}"),
    ]
    if await key_permissions(redis):  # its events stream takes XADD only
        own_events = keys.events_stream(str(owner.tenant_id))
        refused += [
            worker.xautoclaim(own_events, "engine", "w1", 0),
            worker.xreadgroup("engine", "w1", {own_events: ">"}),
            worker.xack(own_events, "engine", "0-1"),
            # markers are the engine's to set; a worker that cleared one would run the attempt
            worker.set(keys.cancelled_attempt(str(owner.tenant_id), "t1", 1), "0"),
        ]
    try:
        for call in refused:
            with pytest.raises(NoPermissionError):
                await call
        pubsub = worker.pubsub()
        with pytest.raises(NoPermissionError):  # the refusal is the subscription's reply
            await pubsub.subscribe(keys.tenant_cancel_channel(other))
            await pubsub.get_message(timeout=5.0)
        await pubsub.aclose()
    finally:
        await worker.aclose()


async def test_a_tenant_worker_cannot_run_admin_commands(
    client: AsyncClient, settings: Settings, owner: Account, redis: Redis, tmp_path: Path
) -> None:
    assert settings.redis_url
    created = await create_worker_credential(client, owner)
    worker = redis_as(created["credential"], settings.redis_url)
    try:
        await _assert_no_admin(worker, created["redis_user"], redis, tmp_path)
    finally:
        await worker.aclose()


@pytest.fixture
async def role_users(settings: Settings, redis: Redis) -> AsyncIterator[Settings]:
    """The engine's and the shared pool's users as `baton redis provision-acl` makes them
    (under names of this test's own, removed afterwards)."""
    suffix = uuid.uuid4().hex[:8]
    roles = settings.model_copy(
        update={
            "redis_engine_user": f"test-engine-{suffix}",
            "redis_engine_password": f"engine-{uuid.uuid4().hex}",
            "redis_worker_user": f"test-worker-{suffix}",
            "redis_worker_password": f"worker-{uuid.uuid4().hex}",
        }
    )
    assert settings.redis_url
    assert await provision_roles(settings.redis_url, roles) == [
        roles.redis_engine_user,
        roles.redis_worker_user,
    ]
    yield roles
    await redis.execute_command("ACL", "DELUSER", roles.redis_engine_user, roles.redis_worker_user)


def _login(settings: Settings, user: str, password: str | None) -> Redis:
    assert settings.redis_url and password
    url = WorkerCredential("0" * 32, "q", user, password).connection_url(settings.redis_url)
    return create_redis(url)


# Admin commands that cannot harm the shared Redis even if a regression let them through:
# sent for real, each must be refused.
HARMLESS_ADMIN = (
    ("CONFIG", "GET", "maxmemory"),
    ("ACL", "LIST"),
    ("KEYS", "*"),
    ("INFO",),
    ("MONITOR",),
    ("CLIENT", "LIST"),
    ("EVAL", "return 1", "0"),
)
# Admin commands that would wipe or stop the Redis every running suite shares, were the ACL
# to regress: never sent to it (see ``assert_refused_without_running``).
DESTRUCTIVE_ADMIN = (
    ("CONFIG", "SET", "appendonly", "no"),
    ("ACL", "SETUSER", "intruder", "on", ">pw", "~*", "+@all"),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("SHUTDOWN", "NOSAVE"),
    ("CLIENT", "KILL", "USER", "default"),
    ("SCRIPT", "FLUSH"),
)


async def _assert_no_admin(client: Redis, user: str, redis: Redis, tmp_path: Path) -> None:
    for command in HARMLESS_ADMIN:
        with pytest.raises(NoPermissionError):
            await client.execute_command(*command)
    await assert_refused_without_running(redis, user, DESTRUCTIVE_ADMIN, tmp_path)


async def assert_refused_without_running(
    redis: Redis, user: str, commands: Sequence[tuple[str, ...]], workdir: Path
) -> None:
    """Each command is refused to ``user`` by its ACL on the shared Redis, checked without
    the command ever running there: ``ACL DRYRUN`` on Redis 7; on 6.2 (no DRYRUN) the user's
    rules are copied to a throwaway redis-server, where the commands are sent for real."""
    if await key_permissions(redis):  # Redis >= 7
        for command in commands:
            verdict = await redis.execute_command("ACL", "DRYRUN", user, *command)
            assert verdict != "OK" and "no permissions" in str(verdict), (command, verdict)
        return
    rules = await _acl_rules(redis, user)
    server = RedisServer(workdir)
    server.start()
    admin = Redis.from_url(server.url, decode_responses=True)
    password = uuid.uuid4().hex
    try:
        await admin.execute_command("ACL", "SETUSER", user, "reset", *rules, f">{password}")
        copy = Redis.from_url(server.url, username=user, password=password)
        try:
            for command in commands:
                with pytest.raises(NoPermissionError):
                    await copy.execute_command(*command)
        finally:
            await copy.aclose()
    finally:
        await admin.aclose()
        server.kill()


async def _acl_rules(redis: Redis, user: str) -> list[str]:
    """``user``'s rules as ``ACL LIST`` shows them, without its password hashes."""
    for line in await redis.execute_command("ACL", "LIST"):
        name, *rules = re.findall(r"\([^)]*\)|\S+", str(line))[1:]  # a selector is one rule
        if name == user:
            return [rule for rule in rules if not rule.startswith("#")]
    raise AssertionError(f"no ACL user {user}")


async def test_the_shared_pool_user_runs_worker_commands_only(
    role_users: Settings, redis: Redis, tmp_path: Path
) -> None:
    shared = _login(role_users, role_users.redis_worker_user, role_users.redis_worker_password)
    tenant = str(uuid.uuid4())
    stream = keys.queue_stream(tenant, "default")
    try:
        assert await shared.smembers(keys.queue_tenants("default")) is not None
        await shared.xgroup_create(stream, keys.WORKERS_GROUP, id="0", mkstream=True)
        assert await shared.xreadgroup(keys.WORKERS_GROUP, "w", {stream: ">"}) == []
        await shared.xadd(keys.events_stream(tenant), {"event": "{}"})
        await shared.set(keys.worker_heartbeat("w"), "{}", ex=5)
        assert await shared.exists(keys.cancelled_attempt(tenant, "t1", 1)) == 0
        await _assert_no_admin(shared, role_users.redis_worker_user, redis, tmp_path)
        refused = [
            shared.xrange(keys.events_stream(tenant)),
            shared.get(keys.revoked_access_token("jti")),
            shared.zrange(keys.engine_due(), 0, -1),
            shared.sadd(keys.queue_tenants("default"), tenant),
            shared.xadd(keys.updates_stream(tenant), {"x": "1"}),
            shared.set("not-baton", "1"),
        ]
        if await key_permissions(redis):
            refused += [
                shared.xautoclaim(keys.events_stream(tenant), "engine", "w", 0),  # XADD only
                shared.xreadgroup("engine", "w", {keys.events_stream(tenant): ">"}),
                shared.delete(keys.queue_tenants("default")),  # discovery is read-only
                shared.delete(keys.cancelled_attempt(tenant, "t1", 1)),  # markers too
            ]
        for call in refused:
            with pytest.raises(NoPermissionError):
                await call
    finally:
        await shared.aclose()
        await redis.delete(stream, keys.events_stream(tenant), keys.worker_heartbeat("w"))


async def test_the_engine_user_manages_worker_users_but_not_redis(
    role_users: Settings, redis: Redis, tmp_path: Path
) -> None:
    engine = _login(role_users, role_users.redis_engine_user, role_users.redis_engine_password)
    name = f"bw-test-{uuid.uuid4().hex[:8]}"
    try:
        await engine.execute_command("ACL", "SETUSER", name, "on", ">secret-of-the-test")
        await engine.execute_command("CLIENT", "KILL", "USER", name)
        assert await engine.execute_command("ACL", "DELUSER", name) == 1
        await engine.set(keys.engine_epoch(), "test")  # Baton's keys: all of them
        await engine.delete(keys.engine_epoch())
        for command in (("KEYS", "*"), ("ACL", "LIST"), ("GET", "not-baton")):
            with pytest.raises(NoPermissionError):
                await engine.execute_command(*command)
        await assert_refused_without_running(
            redis,
            role_users.redis_engine_user,
            [
                ("FLUSHALL",),
                ("FLUSHDB",),
                ("CONFIG", "SET", "appendonly", "no"),
                ("SET", "not-baton", "1"),
            ],
            tmp_path,
        )
    finally:
        await engine.aclose()


async def test_a_shared_pool_worker_runs_a_task_as_its_own_user(
    role_users: Settings, redis: Redis
) -> None:
    """The whole worker loop - discovery, reading, reporting, heartbeats, claiming, the
    cancel channel - works with exactly the shared pool's commands."""
    tenant, queue = str(uuid.uuid4()), f"shared-{uuid.uuid4().hex[:8]}"
    stream = keys.queue_stream(tenant, queue)
    message = TaskMessage(
        tenant_id=tenant,
        run_id=str(uuid.uuid4()),
        task_run_id=str(uuid.uuid4()),
        task_name="noop",
        attempt=1,
        spec={"name": "noop", "type": "python", "function": "worker.builtins:noop"},
        queue=queue,
    )
    await redis.sadd(keys.queue_tenants(queue), tenant)
    await redis.xadd(stream, {TASK_FIELD: message.to_json()})
    connection = _login(role_users, role_users.redis_worker_user, role_users.redis_worker_password)
    worker = Worker(
        connection, worker_config(name=f"shared-{uuid.uuid4().hex[:6]}", queues=(queue,))
    )
    task = asyncio.create_task(worker.run())
    try:
        await eventually(
            lambda: redis.exists(keys.worker_heartbeat(worker.name)), what="a heartbeat"
        )
        await eventually(
            lambda: redis.xrange(keys.events_stream(tenant)),
            lambda events: any('"finished"' in fields[EVENT_FIELD] for _, fields in events),
            what="the task's result",
        )
        assert await worker.claim_abandoned() == 0
        # Its cancel listener is subscribed (a refused SUBSCRIBE would end the listener).
        await eventually(
            lambda: _subscribed(redis, role_users.redis_worker_user),
            what="the cancel listener subscribed",
        )
        assert not worker._stopping.is_set()
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=10)
        await connection.aclose()
        await redis.delete(stream, keys.events_stream(tenant), keys.queue_tenants(queue))


async def _subscribed(redis: Redis, user: str) -> bool:
    """Whether a connection of ``user`` holds a channel subscription."""
    listing = str(await redis.execute_command("CLIENT", "LIST"))
    return any(
        f" user={user} " in f" {line} " and " sub=1 " in f" {line} "
        for line in listing.splitlines()
    )


async def test_the_engine_user_runs_the_engines_worker_chores(role_users: Settings) -> None:
    engine = _login(role_users, role_users.redis_engine_user, role_users.redis_engine_password)
    tenant = uuid.uuid4()
    user = TenantWorkerUser(f"bw-test-{uuid.uuid4().hex[:8]}", "0" * 64, str(tenant), "q")
    try:
        await mark_tenant_due(engine, tenant)
        await publish_cancel(engine, tenant, [(uuid.uuid4(), 1)])
        await set_tenant_worker_user(engine, user)
        await remove_tenant_worker_user(engine, user.username)
        assert await engine.execute_command("ACL", "GETUSER", user.username) is None
    finally:
        await engine.zrem(keys.engine_due(), str(tenant))
        await engine.delete(keys.engine_wakeup())
        await engine.aclose()
