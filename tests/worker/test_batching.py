"""The worker's round trips: started coalesced with the result, reports batched per loop
tick, the stream list cached, inline builtins called on the loop.

These tests drive a real :class:`Worker` against the real Redis, putting task messages on
a tenant's stream themselves (no engine: an unknown tenant on a queue of its own).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from kernel.wire import keys
from tests.fixtures.execution import worker_config
from tests.fixtures.waiting import eventually
from tests.worker.helpers import (
    LogCollector,
    MessageFactory,
    dispatch_message,
    event_kinds,
    pending_count,
)
from worker.executors.base import ExecutorPolicy
from worker.executors.python import PythonExecutor
from worker.runner import Worker


@pytest.fixture
def queue() -> str:
    return f"batching-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def worker(redis: Redis, queue: str) -> AsyncIterator[Worker]:
    running = Worker(redis, worker_config(name=f"w-{queue}", queues=(queue,)))
    task = asyncio.create_task(running.run())
    yield running
    running.stop()
    await asyncio.wait_for(task, timeout=10)


NOOP = {"type": "python", "function": "worker.builtins:noop"}


async def test_a_quick_task_reports_started_then_finished_and_is_acked(
    redis: Redis, worker: Worker, queue: str
) -> None:
    tenant = str(uuid.uuid4())
    message = await dispatch_message(redis, queue, tenant, NOOP)
    kinds = await eventually(
        lambda: event_kinds(redis, tenant, message.task_run_id), lambda k: "finished" in k
    )
    assert kinds == ["started", "finished"]
    assert await eventually(lambda: pending_count(redis, queue, tenant), lambda n: n == 0) == 0


async def test_a_running_task_reports_started_before_it_ends(
    redis: Redis, worker: Worker, queue: str, tmp_path: Path
) -> None:
    tenant = str(uuid.uuid4())
    gate = tmp_path / "go"
    spec = {
        "type": "python",
        "function": "tests.runs.tasks:wait_for_file",
        "kwargs": {"path": str(gate)},
    }
    message = await dispatch_message(redis, queue, tenant, spec)
    kinds = await eventually(lambda: event_kinds(redis, tenant, message.task_run_id))
    assert kinds == ["started"]  # on its own, while the task still runs
    gate.touch()
    kinds = await eventually(
        lambda: event_kinds(redis, tenant, message.task_run_id), lambda k: "finished" in k
    )
    assert kinds == ["started", "finished"]


async def test_many_tasks_ending_together_each_report_once_in_order(
    redis: Redis, worker: Worker, queue: str
) -> None:
    tenant = str(uuid.uuid4())
    messages = [await dispatch_message(redis, queue, tenant, NOOP) for _ in range(40)]

    async def all_kinds() -> list[list[str]]:
        return [await event_kinds(redis, tenant, m.task_run_id) for m in messages]

    seen = await eventually(all_kinds, lambda ks: all("finished" in k for k in ks))
    assert all(kinds == ["started", "finished"] for kinds in seen)
    assert await eventually(lambda: pending_count(redis, queue, tenant), lambda n: n == 0) == 0


async def test_a_worker_with_a_cached_stream_list_finds_a_new_tenant(
    redis: Redis, worker: Worker, queue: str
) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    one = await dispatch_message(redis, queue, first, NOOP)
    await eventually(lambda: event_kinds(redis, first, one.task_run_id), lambda k: "finished" in k)
    two = await dispatch_message(redis, queue, second, NOOP)  # a new member: SCARD changes
    await eventually(lambda: event_kinds(redis, second, two.task_run_id), lambda k: "finished" in k)


async def test_a_worker_reads_again_after_redis_lost_its_streams(
    redis: Redis, worker: Worker, queue: str
) -> None:
    """The cached list names streams that no longer exist: NOGROUP makes it read again."""
    tenant = str(uuid.uuid4())
    one = await dispatch_message(redis, queue, tenant, NOOP)
    await eventually(lambda: event_kinds(redis, tenant, one.task_run_id), lambda k: "finished" in k)
    await redis.delete(keys.queue_stream(tenant, queue), keys.events_stream(tenant))
    two = await dispatch_message(redis, queue, tenant, NOOP)
    await eventually(lambda: event_kinds(redis, tenant, two.task_run_id), lambda k: "finished" in k)


async def test_inline_functions_run_on_the_loop_and_others_in_a_thread(
    make_message: MessageFactory, logs: LogCollector
) -> None:
    executor = PythonExecutor(ExecutorPolicy(python_modules=("tests.worker.sample_tasks",)))
    loop_thread = threading.get_ident()
    inline = await executor.execute(
        make_message({"type": "python", "function": "tests.worker.sample_tasks:thread_inline"}),
        logs,
    )
    threaded = await executor.execute(
        make_message({"type": "python", "function": "tests.worker.sample_tasks:thread_id"}),
        logs,
    )
    assert inline.output == loop_thread
    assert threaded.output != loop_thread
