"""Dispatches committed with an events batch: published and acknowledged exactly once.

The engine admits a finished task's successors in the transaction that records the finish
(``Engine._apply_stream``). After the commit it must do two things in Redis: publish the
dispatch messages and acknowledge the batch's events. An engine that dies between the
commit and those leaves the events pending - another engine replays them, and attempt
fencing makes the replay change nothing in PostgreSQL - but the messages would be gone,
and the tasks would wait for them forever.

So the messages are written to an outbox (``keys.engine_outbox``, named after the batch's
first entry) *before* the commit, and one Lua script publishes them, acknowledges the
batch and deletes the outbox, atomically - only if the outbox is still there. The replay
of the batch (``recover``) publishes, with the same script, the messages whose dispatch
PostgreSQL committed (the message's attempt is the task's current one, dispatched and not
started) and drops the rest (their transaction rolled back). Whoever runs the script first
publishes; the other finds the outbox gone and publishes nothing: no message is lost and
none is sent twice, even when a slow engine and the one replaying its batch race.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from kernel.wire import keys
from kernel.wire.protocol import TASK_FIELD, TaskMessage

# KEYS: outbox, events stream, the engine's tenant set, n queue streams, m queue-tenant sets
# ARGV: group, tenant, task field, n, m, k, n messages, m ops ("a" add / "r" remove), k ids
_PUBLISH_ONCE = """
local n, m, k = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local published = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  for i = 1, n do
    redis.call('XADD', KEYS[3 + i], '*', ARGV[3], ARGV[6 + i])
  end
  for j = 1, m do
    if ARGV[6 + n + j] == 'r' then
      redis.call('SREM', KEYS[3 + n + j], ARGV[2])
    else
      redis.call('SADD', KEYS[3 + n + j], ARGV[2])
    end
  end
  redis.call('SADD', KEYS[3], ARGV[2])
  redis.call('DEL', KEYS[1])
  published = n
end
if k > 0 then
  local ids = {}
  for a = 1, k do ids[a] = ARGV[6 + n + m + a] end
  redis.call('XACK', KEYS[2], ARGV[1], unpack(ids))
end
return published
"""

# Of the dispatches an outbox holds, those PostgreSQL committed and that still wait for
# their message: the task's current attempt, dispatched, not started (a start makes the
# task running).
_STILL_DISPATCHED = text(
    """
    SELECT t.id, t.attempt
      FROM task_runs t
      JOIN unnest(CAST(:ids AS uuid[]), CAST(:attempts AS integer[])) AS u(id, attempt)
        ON t.id = u.id AND t.attempt = u.attempt
     WHERE t.tenant_id = :tenant AND t.status = 'queued' AND t.dispatched_at IS NOT NULL
    """
)


def script(redis: Redis) -> AsyncScript:
    """The publish-once script, registered once per client (then called by SHA)."""
    return redis.register_script(_PUBLISH_ONCE)


async def write(redis: Redis, outbox: str, messages: Sequence[TaskMessage]) -> None:
    """Keep the messages until they are published (call before the commit)."""
    payload = json.dumps([message.to_json() for message in messages])
    await redis.set(outbox, payload, ex=keys.OUTBOX_SECONDS)


async def publish_once(
    publish: AsyncScript,
    tenant_id: str,
    outbox: str,
    messages: Sequence[TaskMessage],
    hosted: frozenset[str],
    ack: Sequence[str] = (),
) -> int:
    """Publish ``messages`` if ``outbox`` still exists (deleting it) and acknowledge the
    events ``ack`` names, in one atomic step; returns how many messages were published.

    A queue the tenant serves with its own workers (``hosted``) leaves the shared pool's
    discovery set instead of joining it, as in ``Engine.publish``."""
    queues = sorted({message.queue for message in messages})
    streams = [keys.queue_stream(tenant_id, message.queue) for message in messages]
    sets = [keys.queue_tenants(queue) for queue in queues]
    ops = ["r" if queue in hosted else "a" for queue in queues]
    published = await publish(
        keys=[outbox, keys.events_stream(tenant_id), keys.engine_tenants(), *streams, *sets],
        args=[
            keys.ENGINE_GROUP,
            tenant_id,
            TASK_FIELD,
            len(messages),
            len(sets),
            len(ack),
            *[message.to_json() for message in messages],
            *ops,
            *ack,
        ],
    )
    return int(published)


async def pending(redis: Redis, outbox: str) -> list[TaskMessage]:
    """The messages an outbox holds (none if it is gone)."""
    raw = await redis.get(outbox)
    if raw is None:
        return []
    return [TaskMessage.from_json(item) for item in json.loads(raw)]


async def committed(
    session: AsyncSession, tenant_id: uuid.UUID, messages: Sequence[TaskMessage]
) -> list[TaskMessage]:
    """The messages whose dispatch PostgreSQL holds and that still wait to be sent."""
    rows = (
        await session.execute(
            _STILL_DISPATCHED,
            {
                "tenant": tenant_id,
                "ids": [uuid.UUID(message.task_run_id) for message in messages],
                "attempts": [message.attempt for message in messages],
            },
        )
    ).all()
    waiting = {(str(row.id), row.attempt) for row in rows}
    return [m for m in messages if (m.task_run_id, m.attempt) in waiting]
