"""Streams bounded by what is settled: trimming never removes an entry some group has not
had delivered and acknowledged, and a stream under a steady load stays bounded."""

from __future__ import annotations

import time
import uuid

from redis.asyncio import Redis

from backend.engine import trim
from backend.engine.loop import Engine
from kernel.wire import keys
from kernel.wire.streams import as_text, ensure_group
from tests.engine.helpers import DiesAfterCommit, chain_until_the_engine_dies
from tests.fixtures.execution import running_in_task
from tests.fixtures.factories import create_tenant
from tests.fixtures.services import Services
from tests.fixtures.stack import private_baton
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, python_task, task_of, trigger, wait_for_run


async def _ids(redis: Redis, stream: str) -> list[str]:
    return [as_text(entry_id) for entry_id, _ in await redis.xrange(stream)]


async def test_trimming_keeps_every_undelivered_and_unacknowledged_entry(redis: Redis) -> None:
    tenant = str(uuid.uuid4())
    stream = keys.queue_stream(tenant, "default")
    script = trim.script(redis)
    written = [as_text(await redis.xadd(stream, {"n": str(n)})) for n in range(10)]

    # No group yet: nobody has read the queue, a group created later must find everything.
    assert await trim.trim_settled(script, stream, keys.WORKERS_GROUP) == (-1, 0)
    assert await _ids(redis, stream) == written

    await ensure_group(redis, stream, keys.WORKERS_GROUP)
    assert await trim.trim_settled(script, stream, keys.WORKERS_GROUP) == (0, 0)
    assert await _ids(redis, stream) == written  # created at 0: nothing delivered yet

    # Deliver 6 to two consumers, acknowledge all of them but the third: it and everything
    # after it stay, what came before it goes.
    one = await redis.xreadgroup(keys.WORKERS_GROUP, "w1", {stream: ">"}, count=3)
    two = await redis.xreadgroup(keys.WORKERS_GROUP, "w2", {stream: ">"}, count=3)
    delivered = [as_text(i) for i, _ in one[0][1]] + [as_text(i) for i, _ in two[0][1]]
    assert delivered == written[:6]
    await redis.xack(stream, keys.WORKERS_GROUP, *[i for i in delivered if i != written[2]])
    removed, _ = await trim.trim_settled(script, stream, keys.WORKERS_GROUP)
    assert removed == 2
    assert await _ids(redis, stream) == written[2:]

    # A second group (another reader) that has read less holds the cut back.
    await redis.xgroup_create(stream, "audit-reader", id=written[3])
    await redis.xack(stream, keys.WORKERS_GROUP, written[2])
    removed, _ = await trim.trim_settled(script, stream, keys.WORKERS_GROUP)
    assert removed == 2  # up to and including written[3], the other group's last-delivered
    assert await _ids(redis, stream) == written[4:]
    await redis.xgroup_destroy(stream, "audit-reader")

    # Everything delivered and acknowledged: only the undelivered entries remain.
    removed, _ = await trim.trim_settled(script, stream, keys.WORKERS_GROUP)
    assert removed == 2
    assert await _ids(redis, stream) == written[6:]
    rest = await redis.xreadgroup(keys.WORKERS_GROUP, "w1", {stream: ">"})
    assert [as_text(i) for i, _ in rest[0][1]] == written[6:]  # still readable
    await redis.xack(stream, keys.WORKERS_GROUP, *written[6:])
    await trim.trim_settled(script, stream, keys.WORKERS_GROUP)
    assert await redis.xlen(stream) == 0


async def test_the_pass_forgets_idle_consumers_without_pending_entries_only(redis: Redis) -> None:
    tenant = str(uuid.uuid4())
    stream = keys.events_stream(tenant)
    script = trim.script(redis)
    await ensure_group(redis, stream, keys.ENGINE_GROUP)
    await redis.xadd(stream, {"n": "1"})
    await redis.xadd(stream, {"n": "2"})
    gone = await redis.xreadgroup(keys.ENGINE_GROUP, "gone", {stream: ">"}, count=1)
    held = await redis.xreadgroup(keys.ENGINE_GROUP, "holding", {stream: ">"}, count=1)
    await redis.xack(stream, keys.ENGINE_GROUP, gone[0][1][0][0])

    async def consumers() -> set[str]:
        return {as_text(c["name"]) for c in await redis.xinfo_consumers(stream, keys.ENGINE_GROUP)}

    async def forgotten() -> bool:
        await trim.trim_settled(script, stream, keys.ENGINE_GROUP, consumer_idle_ms=1)
        return await consumers() == {"holding"}

    await eventually(forgotten, what="the idle consumer without pending entries forgotten")
    # The one holding an unacknowledged entry stays, and so does its entry.
    assert [as_text(i) for i, _ in await redis.xrange(stream)] == [as_text(held[0][1][0][0])]


async def test_an_engine_killed_mid_batch_loses_nothing_to_trimming(services: Services) -> None:
    async with private_baton(services, engine_class=DiesAfterCommit) as baton:
        client = baton.client
        redis = baton.app.state.redis
        owner, run = await chain_until_the_engine_dies(baton)
        tenant = str(owner.tenant_id)
        events = keys.events_stream(tenant)
        pending = await redis.xpending(events, keys.ENGINE_GROUP)
        assert pending["pending"] > 0  # the batch it committed but never acknowledged
        held = {as_text(i) for i, _ in await redis.xrange(events)}

        # Trim as often as you like: the unacknowledged batch stays for the replay.
        script = trim.script(redis)
        for _ in range(3):
            await trim.trim_all(redis, script)
        kept = {as_text(i) for i, _ in await redis.xrange(events)}
        unacked = {
            as_text(p["message_id"])
            for p in await redis.xpending_range(events, keys.ENGINE_GROUP, "-", "+", 1000)
        }
        assert unacked and unacked <= kept <= held
        assert await redis.keys(keys.engine_outbox(tenant, "*")), "the outbox is kept"

        # A restarted engine (trimming on its own loop as well) replays the batch.
        rescuer = Engine(baton.settings, baton.app.state.sessionmaker, redis, name="engine-again")
        async with running_in_task(rescuer):
            done = await wait_for_run(client, owner, run["id"], timeout=30)
            assert done["status"] == "succeeded", done
            for name in ("first", "second", "third"):
                attempts = task_of(done, name)["attempts"]
                assert [a["status"] for a in attempts] == ["succeeded"], (name, attempts)

            # Settled: every entry of the run's streams acknowledged, so trimmed away.
            queue = keys.queue_stream(tenant, "default")

            async def drained() -> bool:
                await rescuer.trim_round()
                return await redis.xlen(events) == 0 and await redis.xlen(queue) == 0

            await eventually(drained, what="the settled streams trimmed to nothing")


async def test_streams_under_a_steady_load_stay_bounded(services: Services) -> None:
    async with private_baton(services) as baton:
        client = baton.client
        redis = baton.app.state.redis
        owner = await create_tenant(client)
        tenant = str(owner.tenant_id)
        job = await create_job(client, owner, [python_task("only")])
        events = keys.events_stream(tenant)
        queue = keys.queue_stream(tenant, "default")
        written = 0
        for _ in range(5):
            runs = [await trigger(client, owner, job["id"]) for _ in range(10)]
            for run in runs:
                done = await wait_for_run(client, owner, run["id"], timeout=30)
                assert done["status"] == "succeeded", done
            written += len(runs)
            info = await redis.xinfo_stream(events)
            if "entries-added" in info:  # Redis 7 (6.2, the embedded server, lacks it)
                assert int(info["entries-added"]) >= written  # the stream keeps being written

            async def settled() -> bool:
                await baton.engine.trim_round()
                return await redis.xlen(events) == 0 and await redis.xlen(queue) == 0

            # After each wave the streams are back to nothing, whatever went through them.
            await eventually(settled, what="the streams trimmed after a wave")


async def test_the_pass_prunes_heartbeat_indexes_of_workers_and_replicas_long_gone(
    redis: Redis,
) -> None:
    tenant = str(uuid.uuid4())
    index = keys.tenant_workers(tenant)
    now = time.time()
    await redis.zadd(index, {"gone": now - 2 * 3600, "alive": now})
    await redis.zadd(keys.scheduler_replicas(), {f"gone-{tenant}": now - 2 * 3600})
    await redis.zadd(keys.scheduler_replicas(), {f"alive-{tenant}": now})
    await trim.trim_all(redis, trim.script(redis))
    assert [as_text(m) for m in await redis.zrange(index, 0, -1)] == ["alive"]
    replicas = {as_text(m) for m in await redis.zrange(keys.scheduler_replicas(), 0, -1)}
    assert f"alive-{tenant}" in replicas and f"gone-{tenant}" not in replicas
    await redis.zrem(keys.scheduler_replicas(), f"alive-{tenant}")
