"""The cron scheduler: tenants spread over replicas by leases, fires fenced by token.

**Why Redis leases (``SET NX PX``) with fencing tokens, not PostgreSQL advisory locks.**
Session-level advisory locks need a dedicated connection per replica (they do not survive
PgBouncer's transaction pooling) and give no token to fence a paused leaseholder with.
A Redis lease expires by itself when its replica dies, and each acquisition takes a new
token from a per-tenant counter (``INCR``); every write a scheduler makes to a schedule
row carries its token and is refused when a newer one has written (``fence <= token``).
Correctness does not rest on the lease anyway: the tick ledger's primary key (job,
instant) and the runs' unique (job, scheduled instant) make a duplicate fire impossible
even if two replicas both believe they hold a tenant.

**Spreading tenants.** Replicas register with a heartbeat; each tenant's preferred replica
is chosen by rendezvous hashing over the live ones, so adding or losing a replica moves
only its share. A replica takes a lease only for tenants it is preferred for, or that
have been due longer than a lease time (nobody is serving them). When a replica dies its
leases lapse and the others' rendezvous choice moves its tenants within the lease time:
a peer that missed two heartbeats is taken for dead, and the heir that finds its lease
still held reads when it lapses (``PTTL``) and sleeps until then - it does not poll.

**Work proportional to what is due.** ``baton:sched:due`` holds each tenant's earliest
due instant; a pass reads only the tenants whose instant has come, then only their due
schedules (``ix_schedules_due``). The due tenants it holds leases for are fired in batches
of ``scheduler_tenants_per_transaction``, one transaction a batch, up to
``scheduler_concurrency`` batches at once, each tenant's schedules as one set
(``backend.schedules.firing``); a batch that fails is retried a tenant at a time. The due
set is rebuilt from PostgreSQL at start, beside the firing loop (it matters only after
Redis lost its data). The replica's heartbeat has a loop
of its own, so a long pass never makes the others think it died.

**Outages.** Every pass, the heartbeat and the index rebuild run under a
``kernel.dependencies.Guard``: an outage of Redis or PostgreSQL of any length is
logged (``dependency.down`` / ``dependency.up``), counted, and retried with capped
exponential backoff; the process never ends on one. A tick's fires are idempotent (the
tick ledger), so a pass cut short by an outage is simply done again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
import uuid
from collections import Counter
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import cast

import structlog
from redis.asyncio import Redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

import backend.wiring  # noqa: F401  (the hooks fired by firing are connected there)
from backend.core.db import commit, tenant_transaction
from backend.core.models import utcnow
from backend.core.settings import Settings
from backend.metrics.samples import record_schedule_ticks
from backend.schedules.firing import fire_tenants, next_wake
from backend.schedules.service import FireReport, StaleLease
from backend.tenants.repository import TenantDirectory
from kernel.dependencies import Guard
from kernel.runtime.waits import wait_event
from kernel.wire import keys
from kernel.wire.streams import as_text

log = structlog.get_logger(__name__)

# Set the tenant's due score to the schedule's next instant, unless someone (a job update)
# has since announced an earlier one that is still in the future.
_RESCORE = """
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
local new = tonumber(ARGV[2])
if current and tonumber(current) > tonumber(ARGV[3]) and tonumber(current) < new then
  return 0
end
if new < 0 then
  if (not current) or tonumber(current) <= tonumber(ARGV[3]) then
    redis.call('ZREM', KEYS[1], ARGV[1])
  end
  return 1
end
redis.call('ZADD', KEYS[1], new, ARGV[1])
return 1
"""

# Renew a lease only if it is still ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


# A lease is retried this long after it should have lapsed (Redis expires keys on access, so
# right at the lapse it is gone; the margin absorbs clock reading and scheduling jitter).
_LAPSE_MARGIN = 0.005
_MIN_SLEEP = 0.005


def rendezvous(tenant_id: str, replicas: list[str]) -> str | None:
    """The replica a tenant prefers: the highest hash of (tenant, replica)."""
    if not replicas:
        return None
    return max(replicas, key=lambda r: hashlib.sha256(f"{tenant_id}:{r}".encode()).digest())


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        *,
        name: str | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.redis = redis
        self.name = name or f"scheduler-{socket.gethostname()}-{os.getpid()}"
        self.lease_ms = int(settings.scheduler_lease_seconds * 1000)
        # A heartbeat every third of a lease; a peer that missed two is taken for dead.
        self.heartbeat_s = self.lease_ms / 3000
        self.alive_s = 2 * self.heartbeat_s + 0.05
        self.leases: dict[str, str] = {}  # tenant -> the lease value we hold ("name token")
        self.fired = 0
        self.live: list[str] = []  # replicas seen alive on the last pass
        self.up_since = utcnow()  # instants due after this were missed by a late pass, not downtime
        self.lease_refused = 0  # lease attempts that met another replica's lease
        self.passing = False  # inside a pass (its transactions open), not between passes
        self.peers_lost = 0  # peers found dead by their missed heartbeats
        self._stopping = asyncio.Event()
        self._nudge = asyncio.Event()  # wake the firing loop now (stop, a peer died)
        # tenants whose lease another replica held when we wanted it: when it lapses
        self._lapses: dict[str, float] = {}
        self._pass_started = 0.0
        self._guard = Guard("scheduler.pass")
        self._rebuilds: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        self._stopping.set()
        self._nudge.set()

    async def run(self) -> None:
        """Register, rebuild the due index, then fire what is due until :meth:`stop`."""
        log.info("scheduler.started", scheduler=self.name)
        self.up_since = utcnow()
        await self._guard.run(self._heartbeat())  # registered before the first pass
        helpers = [
            asyncio.create_task(self._rebuild_in_background()),
            asyncio.create_task(self._heartbeat_loop()),
        ]
        try:
            while not self._stopping.is_set():
                # A pass and the wait after it are one guarded iteration: either may meet
                # an outage (logged, backed off, retried - the process never ends on one).
                await self._guard.run(self._pass())
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._release_all()
            log.info("scheduler.stopped", scheduler=self.name)

    async def _pass(self) -> None:
        self.passing = True
        try:
            await self.tick()
        finally:
            self.passing = False
        await self._sleep_until_due()

    async def rebuild_soon(self) -> None:
        """Rebuild the due index in the background (the engine found Redis empty)."""
        task = asyncio.create_task(self._rebuild_in_background())
        self._rebuilds.add(task)
        task.add_done_callback(self._rebuilds.discard)

    async def _rebuild_in_background(self) -> None:
        """Rebuild the due index, retrying (with backoff) until it has been done once."""
        guard = Guard("scheduler.rebuild")
        while not self._stopping.is_set() and not await guard.run(self.rebuild_due_index()):
            pass

    async def _heartbeat(self) -> None:
        await self.redis.zadd(keys.scheduler_replicas(), {self.name: time.time()})

    async def _heartbeat_loop(self) -> None:
        guard = Guard("scheduler.heartbeat")
        # Ends on the stop flag as well as on the cancel `run` sends: on Python 3.11 a cancel
        # that lands inside the Redis client's own timeout can be swallowed, and a loop that
        # only ended on cancellation then beat on for ever (a stop never finished).
        while not self._stopping.is_set():
            if await guard.run(self._beat()):  # on failure it has backed off already
                await wait_event(self._stopping, self.heartbeat_s)

    async def _beat(self) -> None:
        """Our heartbeat, and a look at the peers': one that missed its heartbeats is dead,
        so the firing loop wakes to take the tenants it leaves (each as its lease lapses)."""
        await self._heartbeat()
        live = await self._live()
        lost = [peer for peer in self.live if peer not in live]
        if lost and self.live:
            self.peers_lost += len(lost)
            log.warning("scheduler.peer_lost", scheduler=self.name, peers=lost)
            self.live = live
            self._nudge.set()

    async def _live(self) -> list[str]:
        """The replicas whose last heartbeat is recent (none missed twice)."""
        members = await self.redis.zrangebyscore(
            keys.scheduler_replicas(), time.time() - self.alive_s, "+inf"
        )
        return sorted(as_text(r) for r in cast(list[str], members))

    def tenant_transaction(self, tenant_id: uuid.UUID) -> AbstractAsyncContextManager[AsyncSession]:
        return tenant_transaction(self.sessionmaker, tenant_id)

    async def rebuild_due_index(self) -> None:
        """Put every tenant's next wake-up in Redis (it may have lost its data): its earliest
        instant, or that instant minus the window fires are prepared ahead in.

        Run at start and whenever the engine finds that Redis came back empty."""
        async with self.sessionmaker() as session:
            tenants = await TenantDirectory(session).all()
        for tenant in tenants:
            async with self.tenant_transaction(tenant.id) as session:
                due = await next_wake(
                    session,
                    tenant.id,
                    now=utcnow(),
                    ahead=self.settings.scheduler_ahead_seconds,
                )
            if due is not None:
                score = {str(tenant.id): due.timestamp()}
                await self.redis.zadd(keys.scheduler_due(), score, lt=True)  # or adds it

    async def tick(self) -> FireReport:
        """One pass: every due tenant this replica should serve, leases taken, then fired
        in batches of tenants, one transaction a batch (``run`` keeps the replica's
        heartbeat on a loop of its own)."""
        now = self._pass_started = time.time()
        live = self.live = await self._live()
        due = cast(
            list[tuple[str, float]],
            await self.redis.zrangebyscore(
                keys.scheduler_due(), "-inf", now, start=0, num=1000, withscores=True
            ),
        )
        total = FireReport()

        async def claim(tenant: str, score: float) -> tuple[str, int] | None:
            orphaned = now - score > self.lease_ms / 1000
            if rendezvous(tenant, live) != self.name and not orphaned:
                await self._drop(tenant)
                return None
            if self._lapses.get(tenant, 0.0) > now:
                return None  # held by another replica until then: no point asking before
            token = await self._lease(tenant)
            return None if token is None else (tenant, token)

        # Bounded: a pass may find a thousand due tenants, and one lease call each at once
        # would ask the Redis client's pool for more connections than it holds (redis-py
        # refuses past its limit, 100 by default), failing every pass from then on.
        claims = asyncio.Semaphore(_claim_concurrency(self.redis))

        async def bounded_claim(tenant: str, score: float) -> tuple[str, int] | None:
            async with claims:
                return await claim(tenant, score)

        claimed = [
            found
            for found in await asyncio.gather(
                *(bounded_claim(as_text(t), float(s)) for t, s in due)
            )
            if found is not None
        ]
        size = self.settings.scheduler_tenants_per_transaction
        batches = [dict(claimed[i : i + size]) for i in range(0, len(claimed), size)]
        slots = asyncio.Semaphore(self.settings.scheduler_concurrency)

        async def serve(batch: dict[str, int]) -> None:
            async with slots:
                report = await self._fire(batch, now)
            total.add(report)

        await asyncio.gather(*(serve(batch) for batch in batches))
        self.fired += total.fired + total.recorded
        return total

    def owns(self, tenant_id: uuid.UUID) -> bool:
        """Whether this replica serves the tenant's engine work (admission, sweeps): the
        same rendezvous choice as for its schedules. Before the first pass: yes."""
        return not self.live or rendezvous(str(tenant_id), self.live) == self.name

    async def _fire(self, batch: dict[str, int], now: float) -> FireReport:
        """Fire a batch of tenants in one transaction; rescore each in the due index."""
        fences = {uuid.UUID(tenant): token for tenant, token in batch.items()}
        try:
            async with self.sessionmaker() as session:
                try:
                    results = await fire_tenants(
                        session,
                        self.redis,
                        fences,
                        settings=self.settings,
                        up_since=self.up_since,
                        ahead=self.settings.scheduler_ahead_seconds,
                    )
                except BaseException:
                    await session.rollback()
                    raise
                await commit(session)
            committed = time.time()
        except SQLAlchemyError as error:
            if len(batch) == 1:
                raise
            # One tenant's failure must not hold the others back: each on its own.
            log.warning("scheduler.batch_failed", tenants=len(batch), error=str(error)[:200])
            total = FireReport()
            for tenant, token in batch.items():
                report = await self._fire({tenant: token}, now)
                total.add(report)
            return total
        total = FireReport()
        pipe = self.redis.pipeline(transaction=False)
        for tenant_id, result in results.items():
            tenant = str(tenant_id)
            if isinstance(result, StaleLease):
                log.warning("scheduler.lease_lost", tenant_id=tenant, scheduler=self.name)
                self.leases.pop(tenant, None)
                continue
            report, next_due = result
            # A released fire is admissible from its instant, or from this commit if that
            # came after it.
            report.lateness.extend(max(committed - at.timestamp(), 0.0) for at in report.released)
            record_schedule_ticks(
                fired=report.fired + report.recorded,
                skipped=report.skipped,
                missed=report.missed,
                lateness=report.lateness,
            )
            score = next_due.timestamp() if next_due is not None else -1
            pipe.eval(_RESCORE, 1, keys.scheduler_due(), tenant, score, now)
            if (
                report.fired
                or report.skipped
                or report.missed
                or report.superseded
                or report.released
                or report.recorded
            ):
                log.info(
                    "scheduler.fired",
                    tenant_id=tenant,
                    fired=report.fired,
                    skipped=report.skipped,
                    missed=report.missed,
                    superseded=report.superseded,
                    planned=report.planned,
                    released=len(report.released),
                    released_for=_by_instant(report.released),
                    recorded=report.recorded,
                )
            total.add(report)
        await pipe.execute()
        return total

    async def _lease(self, tenant: str) -> int | None:
        """Our fencing token for the tenant: renew the lease we hold, or take a free one."""
        held = self.leases.get(tenant)
        key = keys.scheduler_lease(tenant)
        if held is not None:
            if await self.redis.eval(_RENEW, 1, key, held, self.lease_ms):
                return int(held.rsplit(" ", 1)[1])
            self.leases.pop(tenant, None)
        token = int(await self.redis.incr(keys.scheduler_fence(tenant)))
        value = f"{self.name} {token}"
        if await self.redis.set(key, value, nx=True, px=self.lease_ms):
            self.leases[tenant] = value
            self._lapses.pop(tenant, None)
            return token
        # Another replica holds it (alive, or dead with its lease still running): come
        # back when it lapses, not before.
        self.lease_refused += 1
        left = int(await self.redis.pttl(key))
        self._lapses[tenant] = time.time() + (left if left > 0 else 0) / 1000
        return None

    async def _drop(self, tenant: str) -> None:
        """Give a lease back at once when another replica is now preferred for it."""
        held = self.leases.pop(tenant, None)
        if held is not None:
            await self.redis.eval(_RENEW, 1, keys.scheduler_lease(tenant), held, 1)

    async def _release_all(self) -> None:
        for tenant in list(self.leases):
            await self._drop(tenant)
        await self.redis.zrem(keys.scheduler_replicas(), self.name)

    async def _sleep_until_due(self) -> None:
        """Sleep until the next tenant is due, a lease we wait for lapses, a due tenant
        nobody served becomes ours to take, or a peer is found dead - never a busy loop."""
        now = time.time()
        wait = self.settings.scheduler_poll_seconds
        ahead = cast(
            list[tuple[str, float]],
            await self.redis.zrangebyscore(
                keys.scheduler_due(), f"({now}", "+inf", start=0, num=1, withscores=True
            ),
        )
        if ahead:
            wait = min(wait, float(ahead[0][1]) - now)
        head = cast(
            list[tuple[str, float]],
            await self.redis.zrange(keys.scheduler_due(), 0, 0, withscores=True),
        )
        if head and float(head[0][1]) <= now:
            # due, and served by another replica (or not yet): ours to take if it is still
            # there a lease after its instant
            wait = min(wait, float(head[0][1]) + self.lease_ms / 1000 - now)
        # a lapse the last pass started after was retried by it already
        started = self._pass_started
        self._lapses = {t: at for t, at in self._lapses.items() if at + _LAPSE_MARGIN > started}
        if self._lapses:
            wait = min(wait, min(self._lapses.values()) + _LAPSE_MARGIN - now)
        # not asyncio.wait_for: a cancelled replica went on firing (kernel/runtime/waits.py)
        await wait_event(self._nudge, max(wait, _MIN_SLEEP))
        self._nudge.clear()


def _by_instant(instants: list[datetime]) -> dict[str, int]:
    """How many fires each instant has, for a log line."""
    return dict(Counter(at.isoformat() for at in instants))


def _claim_concurrency(redis: Redis) -> int:
    """How many lease calls a pass makes at once: a quarter of the client's connection pool
    (the heartbeat, the sealer and the engine share it), at most 32."""
    pool_size = getattr(redis.connection_pool, "max_connections", None) or 128
    return max(1, min(32, int(pool_size) // 4))
