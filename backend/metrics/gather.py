"""The engine's periodic gatherer: queue depth and pending entries, read from Redis.

Every ``BATON_METRICS_GATHER_SECONDS`` it finds the queues (``baton:queues:<q>:tenants``),
and for each tenant's stream on them asks the ``workers`` consumer group, in one pipelined
round trip per queue, for

- ``lag``: entries no worker has read yet - the depth. Dispatch streams are not trimmed
  (``XLEN`` counts every message ever dispatched), so the group's lag is the depth, not
  the length. Redis before 7.0 has no ``lag``: there the entries after the group's last
  delivered id are counted, up to :data:`FALLBACK_COUNT_CAP` per stream.
- ``pending``: entries read but not acknowledged (``XPENDING``'s count).

A stream no worker has ever read has no ``workers`` group yet: all of it is depth
(``XLEN``), nothing is pending - a queue without workers is the backlog to see first.

Summed over tenants per queue (and over queues per configured tenant), so the label sets
stay bounded. Several engine replicas each report the same totals: aggregate with ``max``.
It also resolves the tenant slugs of ``BATON_METRICS_TENANT_LABELS`` to ids.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any

import structlog
from prometheus_client import Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.tenants.repository import TenantDirectory
from kernel.metrics import (
    OTHER,
    QUEUE_DEPTH,
    QUEUE_PENDING,
    TENANT_QUEUE_DEPTH,
    TENANTS,
)
from kernel.runtime.waits import wait_event
from kernel.wire import keys
from kernel.wire.streams import as_text

log = structlog.get_logger(__name__)

FALLBACK_COUNT_CAP = 1000
_QUEUE_SETS = keys.queue_tenants("*")
_QUEUE_PREFIX, _QUEUE_SUFFIX = _QUEUE_SETS.split("*")


class QueueGatherer:
    """Refreshes the queue gauges periodically until :meth:`stop`."""

    def __init__(
        self,
        redis: Redis,
        *,
        interval: float = 15.0,
        max_queues: int = 50,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self.redis = redis
        self.interval = interval
        self.max_queues = max_queues
        self.sessionmaker = sessionmaker
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """End :meth:`run` after the current pass."""
        self._stopping.set()

    async def run(self) -> None:
        """Gather every ``interval`` seconds; a failed pass is logged and retried."""
        while not self._stopping.is_set():
            try:
                await self.gather()
            except (RedisError, OSError, SQLAlchemyError) as error:
                log.warning("metrics.gather_failed", error=type(error).__name__)
            await wait_event(self._stopping, self.interval)

    async def gather(self) -> None:
        """One pass: resolve configured slugs, then refresh the queue gauges."""
        await self.resolve_slugs()
        depth: dict[str, int] = defaultdict(int)
        pending: dict[str, int] = defaultdict(int)
        by_tenant: dict[str, int] = defaultdict(int)
        queues = await self.queues()
        labelled = set(queues[: self.max_queues])
        for queue in queues:
            label = queue if queue in labelled else OTHER
            for tenant_id, lag, unacked in await self.queue_stats(queue):
                depth[label] += lag
                pending[label] += unacked
                by_tenant[TENANTS.label(tenant_id)] += lag
        _replace(QUEUE_DEPTH, depth)
        _replace(QUEUE_PENDING, pending)
        _replace(TENANT_QUEUE_DEPTH, {t: by_tenant.get(t, 0) for t in TENANTS.values()})

    async def resolve_slugs(self) -> None:
        """Look up the ids of configured tenant slugs not resolved yet."""
        slugs = TENANTS.unresolved()
        if not slugs or self.sessionmaker is None:
            return
        async with self.sessionmaker() as session:
            directory = TenantDirectory(session)
            for slug in slugs:
                tenant = await directory.get_by_slug(slug)
                if tenant is not None:
                    TENANTS.resolve(slug, tenant.id)

    async def queues(self) -> list[str]:
        """Every queue a task has been dispatched to, sorted by name."""
        found: set[str] = set()
        async for raw in self.redis.scan_iter(match=_QUEUE_SETS, count=1000):
            name = as_text(raw)
            found.add(name[len(_QUEUE_PREFIX) : len(name) - len(_QUEUE_SUFFIX)])
        return sorted(found)

    async def queue_stats(self, queue: str) -> list[tuple[str, int, int]]:
        """(tenant id, depth, pending) of each tenant's stream on ``queue`` (the admin
        console's platform health reads it too)."""
        tenants = sorted(as_text(t) for t in await self.redis.smembers(keys.queue_tenants(queue)))
        if not tenants:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for tenant_id in tenants:
                pipe.xinfo_groups(keys.queue_stream(tenant_id, queue))
            replies = await pipe.execute(raise_on_error=False)
        stats: list[tuple[str, int, int]] = []
        for tenant_id, reply in zip(tenants, replies, strict=True):
            if isinstance(reply, ResponseError):  # no such stream (yet, or Redis lost it)
                continue
            stream = keys.queue_stream(tenant_id, queue)
            group = _workers_group(reply)
            if group is None:  # no worker has ever read this queue: every entry waits
                stats.append((tenant_id, int(await self.redis.xlen(stream)), 0))
                continue
            lag = group.get("lag")
            if lag is None:  # Redis < 7, or a lag Redis cannot tell after deletions
                lag = await self._undelivered(stream, group)
            stats.append((tenant_id, int(lag), int(group.get("pending") or 0)))
        return stats

    async def _undelivered(self, stream: str, group: dict[str, Any]) -> int:
        last = as_text(group.get("last-delivered-id") or "0-0")
        entries = await self.redis.xrange(stream, min=f"({last}", count=FALLBACK_COUNT_CAP)
        return len(entries or [])


def _workers_group(groups: Any) -> dict[str, Any] | None:
    for group in groups or []:
        if as_text(group.get("name", "")) == keys.WORKERS_GROUP:
            return dict(group)
    return None


_previous: dict[int, set[str]] = {}  # id(gauge) -> label values set by the last pass


def _replace(gauge: Gauge, values: dict[str, int]) -> None:
    """Set a one-label gauge to exactly ``values``: label values gone since are removed."""
    for label, value in values.items():
        gauge.labels(label).set(value)
    for label in _previous.get(id(gauge), set()) - values.keys():
        with contextlib.suppress(KeyError):
            gauge.remove(label)
    _previous[id(gauge)] = set(values)
