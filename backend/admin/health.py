"""Platform health, read from Redis: live workers, queue depth, scheduler replicas and leases.

Queue depth and pending counts come from the metrics gatherer (``QueueGatherer``), so the
console and ``/metrics`` always count the same way. Worker heartbeats and scheduler keys
are the ones ``worker.runner`` and ``backend.scheduler.loop`` write (``kernel.wire.keys``).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from redis.asyncio import Redis

from backend.admin.schemas import QueueHealth, SchedulerReplica, WorkerHealth
from backend.metrics.gather import QueueGatherer
from kernel.wire import keys
from kernel.wire.protocol import read_heartbeat
from kernel.wire.streams import as_text

MAX_WORKERS = 1000
MAX_LEASES = 500

_WORKER_PREFIX = keys.worker_heartbeat("")
_LEASE_PREFIX, _LEASE_SUFFIX = keys.scheduler_lease("*").split("*")


@dataclass(frozen=True)
class LeaseHeld:
    tenant_id: uuid.UUID
    replica: str
    fencing_token: int
    expires_in_ms: int


def _instant(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


async def live_workers(redis: Redis, *, now: float) -> list[WorkerHealth]:
    """Workers whose heartbeat key has not expired (a worker refreshes it every beat)."""
    names: list[str] = []
    async for raw in redis.scan_iter(match=keys.worker_heartbeat("*"), count=1000):
        names.append(as_text(raw)[len(_WORKER_PREFIX) :])
        if len(names) >= MAX_WORKERS:
            break
    if not names:
        return []
    values = await redis.mget([keys.worker_heartbeat(name) for name in names])
    workers = []
    for name, value in zip(names, values, strict=True):
        info = read_heartbeat(value)
        if info is None:  # expired between the scan and the read, or not a heartbeat
            continue
        at = float(info.get("at", now))
        workers.append(
            WorkerHealth(
                name=name,
                queues=[str(q) for q in info.get("queues", [])],
                concurrency=int(info.get("concurrency", 0)),
                running=int(info.get("running", 0)),
                last_heartbeat_at=_instant(at),
                seconds_since_heartbeat=round(max(now - at, 0.0), 3),
                version=str(info["version"]) if info.get("version") else None,
            )
        )
    return sorted(workers, key=lambda w: w.name)


async def queue_depths(redis: Redis) -> list[QueueHealth]:
    """Depth and pending entries of every queue, summed over its tenants' streams."""
    gatherer = QueueGatherer(redis)
    found = []
    for queue in await gatherer.queues():
        totals: dict[str, int] = defaultdict(int)
        for _tenant, depth, pending in await gatherer.queue_stats(queue):
            totals["depth"] += depth
            totals["pending"] += pending
            totals["tenants"] += 1
        found.append(
            QueueHealth(
                queue=queue,
                depth=totals["depth"],
                pending=totals["pending"],
                tenants=totals["tenants"],
            )
        )
    return found


async def scheduler_replicas(
    redis: Redis, *, now: float, lease_seconds: float
) -> list[SchedulerReplica]:
    """Every replica in the heartbeat set; live ones are those the scheduler counts too."""
    members = cast(
        list[tuple[str, float]],
        await redis.zrange(keys.scheduler_replicas(), 0, -1, withscores=True),
    )
    return [
        SchedulerReplica(
            name=as_text(name),
            last_heartbeat_at=_instant(float(score)),
            live=float(score) >= now - lease_seconds,
        )
        for name, score in members
    ]


async def scheduler_leases(redis: Redis) -> tuple[list[LeaseHeld], bool]:
    """Tenant leases held now (``<replica> <fencing token>``), and whether there were more
    than :data:`MAX_LEASES`."""
    found: list[uuid.UUID] = []
    truncated = False
    async for raw in redis.scan_iter(match=keys.scheduler_lease("*"), count=1000):
        name = as_text(raw)
        try:
            found.append(uuid.UUID(name[len(_LEASE_PREFIX) : len(name) - len(_LEASE_SUFFIX)]))
        except ValueError:
            continue
        if len(found) >= MAX_LEASES:
            truncated = True
            break
    if not found:
        return [], truncated
    async with redis.pipeline(transaction=False) as pipe:
        for tenant_id in found:
            pipe.get(keys.scheduler_lease(str(tenant_id)))
            pipe.pttl(keys.scheduler_lease(str(tenant_id)))
        replies = await pipe.execute()
    leases = []
    for index, tenant_id in enumerate(found):
        value, ttl = replies[2 * index], replies[2 * index + 1]
        if value is None:  # released since the scan
            continue
        replica, _, token = as_text(value).rpartition(" ")
        leases.append(
            LeaseHeld(
                tenant_id=tenant_id,
                replica=replica,
                fencing_token=int(token) if token.isdigit() else 0,
                expires_in_ms=max(int(ttl), 0),
            )
        )
    return sorted(leases, key=lambda lease: (lease.replica, str(lease.tenant_id))), truncated
