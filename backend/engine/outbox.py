"""Dispatches committed by the engine: published exactly once, even across a crash.

Every dispatch the engine commits - the successors a finishing events batch admits
(``Engine._apply_stream``) and what its admission loop admits (a trigger's first tasks, a
retry after its backoff) - needs a message in Redis after the commit. An engine that dies,
or loses Redis, between the commit and the publication would leave the tasks dispatched
with no message, waiting forever.

So the messages are written to an outbox (``keys.engine_outbox``, registered with its
time in ``keys.engine_outboxes``) *before* the commit, and one Lua script publishes them,
acknowledges the events batch (if any), deletes the outbox and unregisters it, atomically -
only if the outbox is still there. Whoever runs the script first publishes; anyone else
finds the outbox gone and publishes nothing.

An outbox left behind is recovered (``Engine._recover_outbox``) by whoever replays its
events batch, or by the engine's sweep once it is older than ``STALE_SECONDS``: it
publishes, with the same script, the messages whose dispatch PostgreSQL committed (the
message's attempt is the task's current one, dispatched and not started) and drops the
rest (their transaction rolled back). That query locks the rows, so a recovery that races
a transaction still open waits for its outcome instead of reading the state before it.

A publication whose answer was lost (the connection broke after Redis ran the script) is
therefore never undone: the engine cannot tell whether it ran, leaves the outbox to the
recovery, and the recovery finds it gone if it ran. No task runs twice for it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from kernel.wire import keys
from kernel.wire.protocol import TASK_FIELD, TaskMessage
from kernel.wire.streams import as_text

# A recovery waits this long after an outbox was written: the engine that wrote it
# publishes it within milliseconds of its commit when nothing goes wrong.
STALE_SECONDS = 5.0
RECOVER_BATCH = 100

# KEYS: outbox, events stream, the engine's tenant set, the outbox registry,
#       n queue streams, m queue-tenant sets
# ARGV: group, tenant, task field, n, m, k, n messages, m ops ("a" add / "r" remove), k ids
_PUBLISH_ONCE = """
local n, m, k = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local published = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  for i = 1, n do
    redis.call('XADD', KEYS[4 + i], '*', ARGV[3], ARGV[6 + i])
  end
  for j = 1, m do
    if ARGV[6 + n + j] == 'r' then
      redis.call('SREM', KEYS[4 + n + j], ARGV[2])
    else
      redis.call('SADD', KEYS[4 + n + j], ARGV[2])
    end
  end
  if n > 0 then redis.call('SADD', KEYS[3], ARGV[2]) end
  redis.call('DEL', KEYS[1])
  published = n
end
redis.call('ZREM', KEYS[4], KEYS[1])
if k > 0 then
  local ids = {}
  for a = 1, k do ids[a] = ARGV[6 + n + m + a] end
  redis.call('XACK', KEYS[2], ARGV[1], unpack(ids))
end
return published
"""

# Of the dispatches an outbox holds, those PostgreSQL committed and that still wait for
# their message: the task's current attempt, dispatched, not started (a start makes the
# task running). Locked: a transaction that dispatched them and is still open is waited
# for, and its outcome read.
_STILL_DISPATCHED = text(
    """
    SELECT t.id, t.attempt
      FROM task_runs t
      JOIN unnest(CAST(:ids AS uuid[]), CAST(:attempts AS integer[])) AS u(id, attempt)
        ON t.id = u.id AND t.attempt = u.attempt
     WHERE t.tenant_id = :tenant AND t.status = 'queued' AND t.dispatched_at IS NOT NULL
       FOR UPDATE OF t
    """
)


def script(redis: Redis) -> AsyncScript:
    """The publish-once script, registered once per client (then called by SHA)."""
    return redis.register_script(_PUBLISH_ONCE)


async def write(redis: Redis, outbox: str, messages: Sequence[TaskMessage]) -> None:
    """Keep the messages until they are published (call before the commit), registered
    for the sweep's recovery; one round trip."""
    payload = json.dumps([message.to_json() for message in messages])
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(outbox, payload, ex=keys.OUTBOX_SECONDS)
        pipe.zadd(keys.engine_outboxes(), {outbox: time.time()})
        await pipe.execute()


async def stale(redis: Redis) -> list[str]:
    """Outboxes written more than ``STALE_SECONDS`` ago and still not published."""
    found = await redis.zrangebyscore(
        keys.engine_outboxes(), "-inf", time.time() - STALE_SECONDS, start=0, num=RECOVER_BATCH
    )
    return [as_text(cast(str, key)) for key in found]


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
        keys=[
            outbox,
            keys.events_stream(tenant_id),
            keys.engine_tenants(),
            keys.engine_outboxes(),
            *streams,
            *sets,
        ],
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
