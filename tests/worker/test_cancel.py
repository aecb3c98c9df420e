"""Cancelling an attempt on the worker, at whatever moment the cancel arrives.

A real :class:`Worker` against the real Redis, with task messages put on a tenant's stream
by the test (no engine: an unknown tenant on a queue of its own).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from redis.asyncio import Redis

from kernel.wire import keys
from tests.fixtures.execution import worker_config
from tests.fixtures.waiting import eventually
from tests.worker.helpers import dispatch_message, event_kinds, finished_result, pending_count
from worker.runner import Worker


async def test_a_cancel_heard_before_the_attempt_took_its_first_step_still_ends_it(
    redis: Redis, tmp_path: Path
) -> None:
    queue, tenant = f"cancel-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    ran = tmp_path / "ran"
    message = await dispatch_message(
        redis, queue, tenant, {"type": "shell", "command": f"touch {ran}"}
    )
    worker = Worker(redis, worker_config(name=f"w-{queue}", queues=(queue,)))
    stream = keys.queue_stream(tenant, queue)
    reply = await redis.xreadgroup(keys.WORKERS_GROUP, worker.name, {stream: ">"}, count=1)
    assert worker._start_all(reply) == 1
    # The cancel listener may run in the same step of the loop, before the attempt's task
    # has run at all (an asyncio task cancelled then never runs its body).
    worker._cancel((message.task_run_id, message.attempt))
    kinds = await eventually(
        lambda: event_kinds(redis, tenant, message.task_run_id),
        lambda found: found == ["finished"],
        what="the cancelled attempt reported",
    )
    assert kinds == ["finished"]
    assert await pending_count(redis, queue, tenant) == 0
    assert worker.running == {}  # its slot is free again
    assert not ran.exists()  # and its command never ran


async def test_a_cancel_whose_message_was_lost_is_found_by_the_heartbeat(
    redis: Redis, tmp_path: Path
) -> None:
    # Pub/sub delivers at most once: a worker (re)subscribing when the cancel is published
    # never hears it. The marker the engine sets before publishing is still there.
    queue, tenant = f"cancel-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    message = await dispatch_message(
        redis, queue, tenant, {"type": "shell", "command": "sleep 300"}
    )
    worker = Worker(redis, worker_config(name=f"w-{queue}", queues=(queue,)))
    task = asyncio.create_task(worker.run())
    try:
        await eventually(
            lambda: event_kinds(redis, tenant, message.task_run_id),
            lambda found: found == ["started"],
            what="the attempt started",
        )
        marker = keys.cancelled_attempt(tenant, message.task_run_id, message.attempt)
        await redis.set(marker, "1", ex=60)  # set, never published
        await eventually(
            lambda: event_kinds(redis, tenant, message.task_run_id),
            lambda found: found == ["started", "finished"],
            what="the cancelled attempt reported",
        )
        finished = await finished_result(redis, tenant, message.task_run_id)
        assert finished["reason"] == "cancelled"
        assert worker.running == {}
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=10)
