"""What the API and the engine tell each other through Redis.

Nothing here is the truth - PostgreSQL is. These are hints that make work start at once
instead of at the engine's next tick; a lost hint only costs that tick.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from backend.core.models import utcnow
from kernel.wire import keys


async def mark_tenant_due(redis: Redis, tenant_id: uuid.UUID, at: datetime | None = None) -> None:
    """Record that ``tenant_id`` has work to admit at ``at`` (now by default)."""
    async with redis.pipeline(transaction=False) as pipe:
        queue_tenant_due(pipe, tenant_id, at)
        await pipe.execute()


def queue_tenant_due(pipe: Pipeline, tenant_id: uuid.UUID, at: datetime | None = None) -> None:
    """:func:`mark_tenant_due`'s commands, added to a pipeline the caller sends (with other
    commands, in one round trip)."""
    when = at or utcnow()
    # LT: an earlier due time wins; a later one never postpones work already due.
    pipe.zadd(keys.engine_due(), {str(tenant_id): when.timestamp()}, lt=True)
    pipe.zadd(keys.engine_due(), {str(tenant_id): when.timestamp()}, nx=True)
    if when <= utcnow():
        pipe.lpush(keys.engine_wakeup(), str(tenant_id))
        pipe.ltrim(keys.engine_wakeup(), 0, 999)


async def publish_cancel(
    redis: Redis, tenant_id: uuid.UUID, attempts: Iterable[tuple[uuid.UUID, int]]
) -> None:
    """Ask workers to stop these task attempts (best effort; results are fenced anyway).

    A marker comes first, for the attempt whose message no worker has read yet (the worker
    checks it as it starts); then the news goes to the shared pool's channel and to the
    tenant's own, which is the only one a tenant-hosted worker may subscribe to.
    """
    async with redis.pipeline(transaction=False) as pipe:
        for task_run_id, attempt in attempts:
            tenant, task = str(tenant_id), str(task_run_id)
            payload = json.dumps({"tenant_id": tenant, "task_run_id": task, "attempt": attempt})
            marker = keys.cancelled_attempt(tenant, task, attempt)
            pipe.set(marker, "1", ex=keys.CANCELLED_MARKER_SECONDS)
            pipe.publish(keys.cancel_channel(), payload)
            pipe.publish(keys.tenant_cancel_channel(tenant), payload)
        await pipe.execute()
