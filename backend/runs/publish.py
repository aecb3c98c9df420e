"""Publishing run and task state changes to the tenant's capped update stream.

Kept apart from the readers (``backend.live.service``) so the run service and the engine
can publish without importing what reads.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from backend.runs.rows import RunRow, TaskRow
from kernel.wire import keys

UPDATES_HISTORY = 10_000
# One encoder for every update: ``json.dumps(item, default=str)`` builds a new one per call,
# several per finished task on the engine's hot path.
_encode = json.JSONEncoder(default=str).encode


def run_update(run: RunRow) -> dict[str, Any]:
    return {
        "type": "run",
        "run_id": str(run.id),
        "job_id": str(run.job_id),
        "status": run.status,
        "reason": run.reason,
        "at": (run.finished_at or run.started_at or run.created_at).isoformat(),
    }


def task_update(task: TaskRow, job_id: uuid.UUID) -> dict[str, Any]:
    return {
        "type": "task",
        "run_id": str(task.run_id),
        "job_id": str(job_id),
        "task": task.name,
        "status": task.status,
        "attempt": task.attempt,
        "reason": task.reason,
        "explanation": task.explanation,
    }


# One command for a batch's updates instead of one XADD each in a pipeline (the client's
# per-command work was most of the cost): the same entries, in order, one per update.
_APPEND = """
for i = 2, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i])
end
return #ARGV - 1
"""


async def publish(redis: Redis, tenant_id: uuid.UUID, updates: Iterable[dict[str, Any]]) -> None:
    """Append state changes to the tenant's update stream (best effort: a live view)."""
    items = [_encode(item) for item in updates]
    if not items:
        return
    append = redis.register_script(_APPEND)  # called by SHA (loaded once per server)
    await append(keys=[keys.updates_stream(str(tenant_id))], args=[UPDATES_HISTORY, *items])


def queue_updates(pipe: Pipeline, tenant_id: uuid.UUID, updates: Iterable[dict[str, Any]]) -> None:
    """:func:`publish`'s commands, added to a pipeline the caller sends."""
    stream = keys.updates_stream(str(tenant_id))
    for item in updates:
        pipe.xadd(
            stream,
            {"e": _encode(item)},
            maxlen=UPDATES_HISTORY,
            approximate=True,
        )
