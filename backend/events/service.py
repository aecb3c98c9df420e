"""Live updates: every run and task state change, per tenant, for Server-Sent Events.

State changes are appended to the tenant's capped stream ``baton:{t}:updates`` (after the
commit that made them). A stream entry's id is the SSE event id, so a client that
reconnects with ``Last-Event-ID`` resumes exactly where it stopped, as long as the entry
is still within the bounded history (``UPDATES_HISTORY`` per tenant). A reader only ever
opens its own tenant's stream: what it can filter on never widens what it can read.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.db import scope_to_tenant
from backend.core.principal import Principal
from backend.runs import service as runs_service
from worker import keys
from worker.streams import as_text

KEEPALIVE_MS = 4_000  # below redis-py's default 5 s socket timeout
_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


def valid_event_id(value: str | None) -> str | None:
    """A Last-Event-ID we issued (``<ms>-<seq>``), else None (start from now)."""
    return value if value and _EVENT_ID.match(value) else None


async def stream_updates(
    redis: Redis,
    tenant_id: uuid.UUID,
    *,
    last_event_id: str | None,
    run_id: uuid.UUID | None,
    job_id: uuid.UUID | None,
    disconnected: Any,
) -> AsyncIterator[str]:
    """SSE frames of the tenant's updates after ``last_event_id`` (or from now)."""
    stream = keys.updates_stream(str(tenant_id))
    position = last_event_id or "$"
    if position == "$":
        latest = cast(list[Any], await redis.xrevrange(stream, count=1))
        position = as_text(latest[0][0]) if latest else "0-0"
    yield "retry: 2000\n\n"
    while not await disconnected():
        try:
            reply = await redis.xread({stream: position}, count=200, block=KEEPALIVE_MS)
        except RedisError:
            yield 'event: error\ndata: {"error": "updates unavailable"}\n\n'
            return
        if not reply:
            yield ": keep-alive\n\n"
            continue
        for _, entries in cast(list[Any], reply):
            for entry_id, fields in entries:
                position = as_text(entry_id)
                data = fields.get("e") if isinstance(fields, dict) else None
                if not data:
                    continue
                update = json.loads(data)
                if run_id is not None and update.get("run_id") != str(run_id):
                    continue
                if job_id is not None and update.get("job_id") != str(job_id):
                    continue
                yield f"id: {position}\nevent: {update['type']}\ndata: {data}\n\n"


async def stream_log_lines(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    run_id: uuid.UUID,
    *,
    task: str,
    attempt: int | None,
    disconnected: Any,
    poll_seconds: float = 0.25,
) -> AsyncIterator[str]:
    """SSE frames of one task attempt's log lines as they arrive; ``end`` when it ends."""
    seq = 0
    while not await disconnected():
        async with sessionmaker() as session:
            await scope_to_tenant(session, principal.tenant_id)
            tail = await runs_service.tail_logs(
                session, principal, run_id, task=task, attempt=attempt, after_seq=seq
            )
        attempt = tail.attempt  # stay on the attempt we started with
        for line in tail.lines:
            seq = line.seq
            yield f"id: {seq}\nevent: log\ndata: {line.model_dump_json()}\n\n"
        if tail.finished and not tail.lines:
            yield f"event: end\ndata: {json.dumps({'attempt': attempt})}\n\n"
            return
        if not tail.lines:
            await asyncio.sleep(poll_seconds)
