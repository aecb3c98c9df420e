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
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.db import scope_to_tenant
from backend.core.principal import Principal
from backend.runs import service as runs_service
from kernel.wire import keys
from kernel.wire.streams import as_text

KEEPALIVE_MS = 4_000  # below redis-py's default 5 s socket timeout
_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


def valid_event_id(value: str | None) -> str | None:
    """A Last-Event-ID we issued (``<ms>-<seq>``), else None (start from now)."""
    return value if value and _EVENT_ID.match(value) else None


@dataclass(frozen=True)
class Update:
    """One state change from the tenant's update stream."""

    id: str  # the stream entry id, also the SSE event id
    body: dict[str, Any]
    raw: str  # the JSON as published


async def latest_update_id(redis: Redis, tenant_id: uuid.UUID) -> str:
    """The id of the tenant's newest update; reading after it reads what happens next."""
    latest = cast(list[Any], await redis.xrevrange(keys.updates_stream(str(tenant_id)), count=1))
    return as_text(latest[0][0]) if latest else "0-0"


async def read_updates(
    redis: Redis,
    tenant_id: uuid.UUID,
    *,
    after: str,
    run_id: uuid.UUID | None,
    job_id: uuid.UUID | None,
    disconnected: Any,
) -> AsyncIterator[list[Update] | None]:
    """The tenant's updates after ``after``, a batch per read (filtered by run or job; a
    batch may come out empty); ``None`` when nothing arrived for ``KEEPALIVE_MS``.

    Ends when the client has gone; a Redis failure is raised to the caller.
    """
    stream = keys.updates_stream(str(tenant_id))
    position = after
    while not await disconnected():
        reply = await redis.xread({stream: position}, count=200, block=KEEPALIVE_MS)
        if not reply:
            yield None
            continue
        batch: list[Update] = []
        for _, entries in cast(list[Any], reply):
            for entry_id, fields in entries:
                position = as_text(entry_id)
                data = fields.get("e") if isinstance(fields, dict) else None
                if not data:
                    continue
                raw = as_text(data)
                update = json.loads(raw)
                if run_id is not None and update.get("run_id") != str(run_id):
                    continue
                if job_id is not None and update.get("job_id") != str(job_id):
                    continue
                batch.append(Update(id=position, body=update, raw=raw))
        yield batch


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
    position = last_event_id or await latest_update_id(redis, tenant_id)
    yield "retry: 2000\n\n"
    updates = read_updates(
        redis, tenant_id, after=position, run_id=run_id, job_id=job_id, disconnected=disconnected
    )
    try:
        async for batch in updates:
            if batch is None:
                yield ": keep-alive\n\n"
                continue
            for update in batch:
                yield f"id: {update.id}\nevent: {update.body['type']}\ndata: {update.raw}\n\n"
    except RedisError:
        yield 'event: error\ndata: {"error": "updates unavailable"}\n\n'


async def follow_log_lines(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    run_id: uuid.UUID,
    *,
    task: str,
    attempt: int | None,
    disconnected: Any,
    after_seq: int = 0,
    poll_seconds: float = 0.25,
) -> AsyncIterator[runs_service.LogTail]:
    """One task attempt's new log lines after ``after_seq`` as they arrive, a batch at a
    time; the last batch is empty with ``finished`` set (the attempt has ended).

    ``attempt`` None follows the task's current attempt at the first read. Ends early
    when the client has gone.
    """
    seq = after_seq
    while not await disconnected():
        async with sessionmaker() as session:
            await scope_to_tenant(session, principal.tenant_id)
            tail = await runs_service.tail_logs(
                session, principal, run_id, task=task, attempt=attempt, after_seq=seq
            )
        attempt = tail.attempt  # stay on the attempt we started with
        if tail.lines:
            seq = tail.lines[-1].seq
            yield tail
        elif tail.finished:
            yield tail
            return
        else:
            await asyncio.sleep(poll_seconds)


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
    tails = follow_log_lines(
        sessionmaker,
        principal,
        run_id,
        task=task,
        attempt=attempt,
        disconnected=disconnected,
        poll_seconds=poll_seconds,
    )
    async for tail in tails:
        for line in tail.lines:
            yield f"id: {line.seq}\nevent: log\ndata: {line.model_dump_json()}\n\n"
        if tail.finished and not tail.lines:
            yield f"event: end\ndata: {json.dumps({'attempt': tail.attempt})}\n\n"
