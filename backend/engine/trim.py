"""Redis bounded by what is settled: streams trimmed up to their oldest unsettled entry.

A dispatch stream (``keys.queue_stream``, group ``workers``) and an events stream
(``keys.events_stream``, group ``engine``) would otherwise keep every entry ever written.
An entry is *settled* once every consumer group of its stream has had it delivered and
acknowledged: a worker acknowledges a dispatch after its result is in the events stream,
the engine acknowledges an event after the transaction that applied it committed (and the
dispatches that batch made are published in the same atomic step, ``engine/outbox.py``).

For each stream one Lua script (atomic: nothing can be delivered, acknowledged or
re-created between the reading and the cut) takes, for every group, the oldest pending
entry (``XPENDING``) - or, when none is pending, the entry just after the group's
``last-delivered-id`` - and cuts with ``XTRIM MINID`` below the smallest of those. So:

- an entry not yet delivered to some group (after its last-delivered id) stays;
- an entry delivered and not acknowledged (pending, e.g. a batch whose engine died between
  its commit and its acknowledgement, or a task whose worker died) stays, with everything
  after it, until it is acknowledged - a replay after ``XAUTOCLAIM`` still finds it;
- a stream whose expected group does not exist yet (no worker has read the queue) is not
  touched: a group created later with id ``0`` must still find every entry.

The same pass forgets consumers that have nothing pending and were idle for
``CONSUMER_IDLE_SECONDS`` (every engine process and worker adds one under its own name,
so restarts would grow the groups forever), prunes each tenant's hosted-worker index
(``keys.tenant_workers``) and the cron scheduler's replica index of entries whose
heartbeat is long past. The other keys that grow with history either expire (outboxes,
cancel markers, rate counters) or are capped (``keys.updates_stream``, ``MAXLEN``).

Streams are found with ``SCAN`` over the tenants' keys (a cursor walk, ``COUNT`` 1000 a
step): a tenant that went idle is trimmed too, not only the ones in flight. Each stream
costs one ``EVALSHA`` (pipelined), ``O(groups + consumers + entries removed)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import structlog
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from backend.workers.service import FORGET_WORKERS_AFTER_SECONDS
from kernel.wire import keys
from kernel.wire.streams import as_text

log = structlog.get_logger(__name__)

# A consumer with nothing pending and no read for this long is a process that is gone.
CONSUMER_IDLE_SECONDS = 3600
# A scheduler replica whose last heartbeat is this old is gone (live ones beat every few s).
REPLICA_FORGET_SECONDS = 3600
SCAN_COUNT = 1000
PIPELINE = 200

# KEYS[1] the stream; ARGV[1] the group that must exist; ARGV[2] consumer idle ms (0: keep)
# Returns {entries removed, consumers removed}, or {-1, 0} when it did not touch the stream.
_TRIM_SETTLED = """
if redis.call('TYPE', KEYS[1])['ok'] ~= 'stream' then return {-1, 0} end
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
local found = false
local low_ms, low_seq = nil, nil
local forgotten = 0
local idle_limit = tonumber(ARGV[2])
for _, g in ipairs(groups) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local name = info['name']
  if name == ARGV[1] then found = true end
  local ms, seq
  if tonumber(info['pending']) > 0 then
    local summary = redis.call('XPENDING', KEYS[1], name)
    ms, seq = parse(summary[2])
  else
    ms, seq = parse(info['last-delivered-id'])
    seq = seq + 1
  end
  if low_ms == nil or ms < low_ms or (ms == low_ms and seq < low_seq) then
    low_ms, low_seq = ms, seq
  end
  if idle_limit > 0 then
    for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], name)) do
      local cinfo = {}
      for i = 1, #c, 2 do cinfo[c[i]] = c[i + 1] end
      if tonumber(cinfo['pending']) == 0 and tonumber(cinfo['idle']) > idle_limit then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[1], name, cinfo['name'])
        forgotten = forgotten + 1
      end
    end
  end
end
if not found then return {-1, forgotten} end
local removed = redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', low_ms, low_seq))
return {removed, forgotten}
"""


def script(redis: Redis) -> AsyncScript:
    """The trim script, registered once per client (then called by SHA)."""
    return redis.register_script(_TRIM_SETTLED)


@dataclass
class TrimReport:
    streams: int = 0
    entries_removed: int = 0
    consumers_removed: int = 0
    index_entries_removed: int = 0
    untouched: list[str] = field(default_factory=list)  # streams without their group yet


def group_of(key: str) -> str | None:
    """The consumer group whose progress bounds a stream key, or None if not one we trim.

    Dispatch streams (``baton:{t}:q:<queue>``) are settled by ``workers``, events streams
    (``baton:{t}:events``) by ``engine``. The live-updates stream has no group (readers
    follow it by id) and is capped by length instead."""
    _, brace, rest = key.partition("}:")
    if not brace:
        return None
    if rest == "events":
        return keys.ENGINE_GROUP
    if rest.startswith("q:"):
        return keys.WORKERS_GROUP
    return None


def _is_worker_index(key: str) -> bool:
    return key.partition("}:")[2] == "workers"


async def trim_settled(
    trim: AsyncScript, key: str, group: str, *, consumer_idle_ms: int = 0
) -> tuple[int, int]:
    """Trim one stream below its oldest unsettled entry; (entries, consumers) removed, or
    (-1, n) when the stream is not there or its group does not exist yet."""
    removed, forgotten = await trim(keys=[key], args=[group, consumer_idle_ms])
    return int(removed), int(forgotten)


async def trim_all(
    redis: Redis,
    trim: AsyncScript,
    *,
    consumer_idle_seconds: float = CONSUMER_IDLE_SECONDS,
) -> TrimReport:
    """One pass over every tenant's streams and history indexes (see the module's doc)."""
    report = TrimReport()
    idle_ms = int(consumer_idle_seconds * 1000)
    streams: list[tuple[str, str]] = []
    indexes: list[str] = []
    async for raw in redis.scan_iter(match=f"{keys.PREFIX}:{{*}}:*", count=SCAN_COUNT):
        key = as_text(raw)
        group = group_of(key)
        if group is not None:
            streams.append((key, group))
        elif _is_worker_index(key):
            indexes.append(key)
    for start in range(0, len(streams), PIPELINE):
        chunk = streams[start : start + PIPELINE]
        async with redis.pipeline(transaction=False) as pipe:
            for key, group in chunk:
                await trim(keys=[key], args=[group, idle_ms], client=pipe)
            replies = await pipe.execute()
        for (key, _), (removed, forgotten) in zip(chunk, replies, strict=True):
            report.consumers_removed += int(forgotten)
            if int(removed) < 0:
                report.untouched.append(key)
                continue
            report.streams += 1
            report.entries_removed += int(removed)
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        for key in indexes:
            pipe.zremrangebyscore(key, "-inf", now - FORGET_WORKERS_AFTER_SECONDS)
        pipe.zremrangebyscore(keys.scheduler_replicas(), "-inf", now - REPLICA_FORGET_SECONDS)
        report.index_entries_removed = sum(int(n) for n in await pipe.execute())
    if report.entries_removed or report.consumers_removed or report.index_entries_removed:
        log.debug(
            "engine.trim.pass",
            streams=report.streams,
            entries_removed=report.entries_removed,
            consumers_removed=report.consumers_removed,
            index_entries_removed=report.index_entries_removed,
        )
    return report
