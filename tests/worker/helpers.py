"""Worker test helpers: a log collector a test can wait on, the message factory type, and
task messages put on a tenant's stream the way the engine does."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from kernel.wire import keys
from kernel.wire.protocol import EVENT_FIELD, TASK_FIELD, LogLine, TaskMessage
from kernel.wire.streams import ensure_group


class LogCollector:
    """A log sink that keeps every line and lets a test wait for one."""

    def __init__(self) -> None:
        self.lines: list[LogLine] = []
        self._changed = asyncio.Event()

    async def __call__(self, line: LogLine) -> None:
        self.lines.append(line)
        self._changed.set()

    def text(self, stream: str) -> list[str]:
        return [line.line for line in self.lines if line.stream == stream]

    async def wait_for(
        self, predicate: Callable[[LogLine], bool], timeout: float = 10.0
    ) -> LogLine:
        async def _wait() -> LogLine:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(_wait(), timeout)


MessageFactory = Callable[..., TaskMessage]


async def dispatch_message(
    redis: Redis, queue: str, tenant: str, spec: dict[str, Any]
) -> TaskMessage:
    """Put a task message for ``tenant`` on ``queue``'s stream, as the engine would."""
    message = TaskMessage(
        tenant_id=tenant,
        run_id=str(uuid.uuid4()),
        task_run_id=str(uuid.uuid4()),
        task_name="t",
        attempt=1,
        spec=spec,
        queue=queue,
    )
    stream = keys.queue_stream(tenant, queue)
    await ensure_group(redis, stream, keys.WORKERS_GROUP)
    await redis.xadd(stream, {TASK_FIELD: message.to_json()})
    await redis.sadd(keys.queue_tenants(queue), tenant)
    return message


async def event_kinds(redis: Redis, tenant: str, task_run_id: str) -> list[str]:
    """The kinds of the events workers sent about one task run, heartbeats left out."""
    entries = await redis.xrange(keys.events_stream(tenant))
    kinds = []
    for _, fields in entries:
        event = json.loads(fields[EVENT_FIELD])
        if event["task_run_id"] == task_run_id and event["kind"] != "heartbeat":
            kinds.append(event["kind"])
    return kinds


async def pending_count(redis: Redis, queue: str, tenant: str) -> int:
    """How many entries of the tenant's stream are delivered and not yet acknowledged."""
    summary = await redis.xpending(keys.queue_stream(tenant, queue), keys.WORKERS_GROUP)
    return int(summary["pending"])


async def finished_result(redis: Redis, tenant: str, task_run_id: str) -> dict[str, Any]:
    """The result a worker reported in the task run's ``finished`` event."""
    for _, fields in await redis.xrange(keys.events_stream(tenant)):
        event = json.loads(fields[EVENT_FIELD])
        if event["task_run_id"] == task_run_id and event["kind"] == "finished":
            return dict(event["result"])
    raise AssertionError(f"no finished event for task run {task_run_id}")
