"""The engine process: admission, event processing and sweeps, as three asyncio loops.

- **admission** pops tenants whose due time has come from ``baton:engine:due`` (woken at
  once by ``baton:engine:wakeup``), and admits their ready tasks by deficit round robin.
- **events** reads the active tenants' events streams in batches, applies each tenant's
  batch in one transaction, acknowledges it, then acts on the effects in Redis.
- **sweep** enforces task and run deadlines, calls attempts whose worker went silent lost,
  and recovers from Redis losing its data (:meth:`Engine.reconcile_redis`).

Every loop survives errors of one iteration and outages of PostgreSQL or Redis of any
length (``kernel.dependencies``: logged, counted, retried with capped exponential
backoff) and stops on :meth:`Engine.stop`.

**Who decides that an attempt is lost.** The sweep, from heartbeats alone: a running
attempt whose last heartbeat is older than ``lost_after_seconds`` - but only while the
engine has been hearing events without interruption for at least that long. An engine
that could not read Redis or write PostgreSQL (or just started) has not heard the
heartbeats of that time, so it judges nobody lost until it has listened long enough -
after an outage, longer still, since surviving workers resume on their own backoff
(:meth:`Engine._heard`). A worker's own "lost" report (an entry it took over after the
visibility timeout) is held to the same rule (``events.apply_events``'s ``lost_before``).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.db import after_commit, tenant_transaction
from backend.core.models import utcnow
from backend.core.settings import Settings
from backend.dispatch.signals import mark_tenant_due, publish_cancel
from backend.engine import outbox, trim
from backend.engine.admission import (
    Admission,
    FairShare,
    admit,
    next_ready_at,
    quota_of,
    refresh_queue_statistics,
)
from backend.engine.events import Effects, apply_events, fail_tasks
from backend.plans.service import plan_limits
from backend.retention import partitions
from backend.runs.hooks import FinishedRun, runs_finished
from backend.runs.publish import publish as publish_updates
from backend.tenants.repository import TenantDirectory
from backend.workers import acl as worker_acl
from backend.workers.repository import WORKER_USERS_TO_REMOVE, WorkerCredentialRepository
from backend.workers.service import acl_user
from kernel import metrics
from kernel.dag.plan import PLANS
from kernel.dag.status import RunStatus
from kernel.dependencies import BACKOFF_CAP, Guard, outage_of
from kernel.runtime.waits import wait_event
from kernel.wire import keys
from kernel.wire.protocol import EVENT_FIELD, TASK_FIELD, TaskEvent, TaskMessage
from kernel.wire.streams import as_text, ensure_group, is_nogroup

log = structlog.get_logger(__name__)

EVENTS_BATCH = 1000
DEAD_LETTER_DELIVERIES = 3
LOGGED_RUNS = 200  # finished runs named in a batch's log line (the count is whole)
LINGER_MS = 5  # how long a batch with no attempt's end waits for one (Engine._linger)
# How an events entry that ends an attempt begins (TaskEvent.to_json writes kind first).
# Only the linger reads this: an entry it misjudges is applied all the same.
_ENDING = ('{"kind":"finished"', '{"kind":"released"')


def _entry_id(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def _ends_attempts(entries: list[Any]) -> bool:
    return any(as_text(fields.get(EVENT_FIELD, "")).startswith(_ENDING) for _, fields in entries)


QUOTA_TTL_SECONDS = 5.0  # a changed quota or plan applies within this long


class Engine:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        *,
        name: str | None = None,
        owns: Callable[[uuid.UUID], bool] | None = None,
    ) -> None:
        self.settings = settings
        # Which tenants this replica admits and sweeps (the cron scheduler's leases spread
        # tenants over replicas); every replica takes any tenant's events - row locks and
        # attempt fencing make that safe, and it shares the load.
        self.owns = owns or (lambda _tenant: True)
        self.sessionmaker = sessionmaker
        self.redis = redis
        self.name = name or f"engine-{socket.gethostname()}-{os.getpid()}"
        self.plans = PLANS
        self._publish_once = outbox.script(redis)
        self._trim = trim.script(redis)
        self.fair = FairShare(settings.admission_quantum)
        self._stopping = asyncio.Event()
        self._event_groups: set[str] = set()
        self._next_recovery = 0.0
        self._quota_cache: dict[uuid.UUID, tuple[float, tuple[int, int]]] = {}
        self._failures: dict[str, int] = {}  # pending event id -> failed retries
        # tenant -> (until, queues its own workers serve), re-read from PostgreSQL
        self._hosted_cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._next_credential_sweep = 0.0
        self._next_partitions = 0.0  # at start, then every partition_maintenance_seconds
        self._guards = {
            loop: Guard(f"engine.{loop}") for loop in ("admission", "events", "sweep", "trim")
        }
        # Since when the events loop has run without a failure (monotonic), and how long it
        # must have listened before it may call a silent attempt lost (see the top).
        self._heard_since = time.monotonic()
        self._must_hear = settings.lost_after_seconds
        self._resync_wanted = True  # re-announce due tenants (at start, after an outage)
        # Called after Redis came back empty (the cron scheduler rebuilds its due index).
        self.on_redis_lost: Callable[[], Awaitable[None]] | None = None

    # -- lifecycle ----------------------------------------------------------------------
    async def run(self) -> None:
        """Run until :meth:`stop`."""
        log.info("engine.started", engine=self.name)
        await asyncio.gather(
            self._admission_loop(), self._events_loop(), self._sweep_loop(), self._trim_loop()
        )
        log.info("engine.stopped", engine=self.name)

    def stop(self) -> None:
        self._stopping.set()

    def tenant_transaction(self, tenant_id: uuid.UUID) -> AbstractAsyncContextManager[AsyncSession]:
        return tenant_transaction(self.sessionmaker, tenant_id)

    async def _guarded(self, loop: str, step: Awaitable[object]) -> None:
        """Await one iteration; on failure log, back off and go on instead of dying.

        Any exception, not only outages: one bad batch must not stop admission and event
        processing for every tenant. Unacknowledged events are retried from the stream.
        """
        guard = self._guards[loop]
        had_failed = bool(guard.seen_down) or guard.backoff.tries > 0
        began = time.monotonic()
        ok = await guard.run(step)
        if loop == "events":
            self._heard(ok=ok, after_failure=had_failed, took=time.monotonic() - began)
        if ok and had_failed:
            self._resync_wanted = True  # e.g. triggers whose wake-up Redis never got

    def _heard(self, *, ok: bool, after_failure: bool, took: float) -> None:
        """Restart the listening clock after anything that may have hidden heartbeats.

        The clock restarts when an iteration *ends*, never when it began: the Redis client
        retries a command for seconds (``kernel.runtime.redis``), so an iteration that started
        during an outage and succeeded the moment Redis came back spent that outage deaf.
        The same goes for a successful iteration that took long (a short outage the
        client's retries rode out). After such a gap the workers are not heard again at
        once: their loops retry with backoff capped at ``BACKOFF_CAP`` and then beat
        within ``heartbeat_seconds``, so the engine listens that much longer before it
        takes silence for death (a running attempt lost, or a dispatch stranded).
        """
        lost_after = self.settings.lost_after_seconds
        if not ok or after_failure or took > lost_after / 2:
            self._heard_since = time.monotonic()
            self._must_hear = lost_after + BACKOFF_CAP + self.settings.heartbeat_seconds

    def may_judge_lost(self) -> bool:
        """Whether the engine has heard events long enough to call a silent attempt lost."""
        return time.monotonic() - self._heard_since >= self._must_hear

    def lost_before(self) -> datetime | None:
        """A heartbeat older than this means lost; None while lost may not be judged."""
        if not self.may_judge_lost():
            return None
        return utcnow() - timedelta(seconds=self.settings.lost_after_seconds)

    # -- admission ----------------------------------------------------------------------
    async def _admission_loop(self) -> None:
        while not self._stopping.is_set():
            await self._guarded("admission", self.admission_round())

    async def admission_round(self) -> int:
        """Admit one round across every due tenant; wait for work if there is none."""
        now = time.time()
        due = await self.redis.zrangebyscore(keys.engine_due(), "-inf", now, start=0, num=1000)
        if not due:
            await self._wait_for_work()
            return 0
        mine = [
            t for t in (uuid.UUID(as_text(raw)) for raw in cast(list[str], due)) if self.owns(t)
        ]
        if not mine:  # due work of tenants another replica serves
            await self._wait_for_work(longest=0.2)
            return 0
        for tenant_id in mine:
            self.fair.add(tenant_id)
        quotas = await self._quotas(set(self.fair.ring))
        # Turns are taken in the fair order and carried out a few at a time: each tenant's
        # admission is a transaction of sequential round trips, so a burst of many due
        # tenants (a top-of-the-minute of scheduled runs) is admitted at the rate of round
        # trips, not of CPU, if tenants wait for each other.
        width = self.settings.engine_admission_concurrency
        weights = {t: q[1] for t, q in quotas.items()}
        turns_left = len(self.fair.ring)
        admitted = 0
        while turns_left > 0:
            turns: list[tuple[uuid.UUID, int]] = []
            while len(turns) < min(width, turns_left):
                turn = self.fair.next_turn(weights)
                if turn is None:
                    break
                turns.append(turn)
            if not turns:
                break
            turns_left -= len(turns)
            results = await asyncio.gather(
                *(
                    self._admit_turn(tenant_id, quotas[tenant_id][0], allowance)
                    for tenant_id, allowance in turns
                ),
                return_exceptions=True,
            )
            failure: BaseException | None = None
            for (tenant_id, _), result in zip(turns, results, strict=True):
                if isinstance(result, BaseException):
                    # Back out of its turn (next_turn took it off the ring; without used()
                    # it would never come back); the resync after the failure marks it due.
                    self.fair.used(tenant_id, 0, still_due=False)
                    self._resync_wanted = True
                    failure = failure or result
                    continue
                admitted += len(result.messages)
                still_due = result.next_due is not None and result.next_due <= utcnow()
                self.fair.used(tenant_id, len(result.messages), still_due=still_due)
            if failure is not None:
                raise failure
        return admitted

    async def _admit_turn(
        self, tenant_id: uuid.UUID, max_concurrent: int, allowance: int
    ) -> Admission:
        """One tenant's turn: admit, then mark it due again when it has more ready work."""
        admission = await self._admit_tenant(tenant_id, max_concurrent, allowance)
        if admission.next_due is not None:
            await mark_tenant_due(self.redis, tenant_id, admission.next_due)
        return admission

    async def _admit_tenant(
        self, tenant_id: uuid.UUID, max_concurrent: int, allowance: int
    ) -> Admission:
        await self.redis.zrem(keys.engine_due(), str(tenant_id))
        hosted = await self._hosted_queues({str(tenant_id)})
        outbox_key = keys.engine_outbox(str(tenant_id), f"admit-{uuid.uuid4().hex}")
        async with self.tenant_transaction(tenant_id) as session:
            admission = await admit(
                session,
                tenant_id,
                self.plans,
                max_concurrent=max_concurrent,
                limit=max(allowance, 1),
                settings=self.settings,
            )
            assert admission is not None  # it waited for the lock
            if admission.messages:
                # Before the commit, as in a finishing batch: an engine that dies (or loses
                # Redis) before publishing leaves them for the recovery (engine/outbox.py).
                await outbox.write(self.redis, outbox_key, admission.messages)
        if admission.messages:
            await self._dispatch(tenant_id, admission.messages, hosted[str(tenant_id)], outbox_key)
        return admission

    async def _quotas(self, tenants: set[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int]]:
        """Quota and weight per tenant, re-read at most every QUOTA_TTL_SECONDS."""
        now = time.monotonic()
        stale = {t for t in tenants if self._quota_cache.get(t, (0.0, (0, 0)))[0] < now}
        if stale:
            async with self.sessionmaker() as session:
                rows = await TenantDirectory(session).get_many(stale)
                plans = await plan_limits(session, self.settings, {t.plan for t in rows.values()})
            for tenant_id in stale:
                row = rows.get(tenant_id)
                limits = plans[row.plan].values if row is not None else None
                quota = quota_of(row, self.settings, limits)
                # A suspended tenant (no quota) is read again next time: its resume wakes
                # it, and must not wait for a cached "nothing may start" to expire.
                ttl = QUOTA_TTL_SECONDS if quota[0] > 0 else 0.0
                self._quota_cache[tenant_id] = (now + ttl, quota)
        return {t: self._quota_cache[t][1] for t in tenants}

    async def _wait_for_work(self, longest: float = 1.0) -> None:
        head = await self.redis.zrange(keys.engine_due(), 0, 0, withscores=True)
        wait = longest
        if head and longest >= 1.0:
            wait = min(max(float(head[0][1]) - time.time(), 0.01), longest)
        popped = await self.redis.blpop([keys.engine_wakeup()], timeout=wait)
        if popped:
            await self.redis.delete(keys.engine_wakeup())

    async def publish(
        self, messages: list[TaskMessage], hosted: dict[str, frozenset[str]] | None = None
    ) -> None:
        """XADD dispatch messages and register their tenants with workers and the engine.

        A queue a tenant serves with its own workers (an active worker credential) is kept
        out of the shared pool's discovery set: only the tenant's workers run it. ``hosted``
        (those queues by tenant) is looked up before the dispatch commits, so that a
        PostgreSQL failure here cannot strand committed dispatches without a message.
        """
        if not messages:
            return
        if hosted is None:
            hosted = await self._hosted_queues({m.tenant_id for m in messages})
        # One MULTI/EXEC: Redis takes every message or none, so a failure can be undone.
        # (Under Redis Cluster the two registry sets live outside the tenant's slot and
        # would have to leave the transaction.)
        async with self.redis.pipeline(transaction=True) as pipe:
            for message in messages:
                stream = keys.queue_stream(message.tenant_id, message.queue)
                pipe.xadd(stream, {TASK_FIELD: message.to_json()})
            for tenant_id, queue in {(m.tenant_id, m.queue) for m in messages}:
                if queue in hosted[tenant_id]:
                    pipe.srem(keys.queue_tenants(queue), tenant_id)
                else:
                    pipe.sadd(keys.queue_tenants(queue), tenant_id)
            pipe.sadd(keys.engine_tenants(), *{m.tenant_id for m in messages})
            await pipe.execute()

    async def _hosted_queues(self, tenants: set[str]) -> dict[str, frozenset[str]]:
        """Queues each tenant serves with its own workers, re-read at most every
        QUOTA_TTL_SECONDS (a new credential moves its queue within that long)."""
        now = time.monotonic()
        for tenant in tenants:
            if self._hosted_cache.get(tenant, (0.0, frozenset()))[0] < now:
                tenant_id = uuid.UUID(tenant)
                async with self.tenant_transaction(tenant_id) as session:
                    queues = await WorkerCredentialRepository(session, tenant_id).hosted_queues()
                self._hosted_cache[tenant] = (now + QUOTA_TTL_SECONDS, queues)
        return {t: self._hosted_cache[t][1] for t in tenants}

    # -- events -------------------------------------------------------------------------
    async def _events_loop(self) -> None:
        while not self._stopping.is_set():
            await self._guarded("events", self.events_round())

    async def events_round(self, block_ms: int = 200) -> int:
        """Read and apply one batch of events from every active tenant."""
        tenants = sorted(as_text(t) for t in await self.redis.smembers(keys.engine_tenants()))
        if not tenants:
            await asyncio.sleep(block_ms / 1000)
            return 0
        streams: dict[Any, Any] = {keys.events_stream(t): ">" for t in tenants}
        for stream in streams:
            if stream not in self._event_groups:
                await ensure_group(self.redis, stream, keys.ENGINE_GROUP)
                self._event_groups.add(stream)
        try:
            response = await self.redis.xreadgroup(
                keys.ENGINE_GROUP, self.name, streams, count=EVENTS_BATCH, block=block_ms
            )
        except ResponseError as error:
            if is_nogroup(error):
                self._event_groups.clear()
                return 0
            raise
        replies = cast(list[Any], response or [])  # RESP2 shape: [[stream, entries], ...]
        replies = await self._linger(replies)
        handled = 0
        for stream, entries in replies:
            try:
                handled += await self._apply_stream(as_text(stream), entries)
            except Exception as error:  # a bad batch must not hold up the other tenants'
                if outage_of(error) is not None:
                    raise  # nobody's batch can be applied: back off (events stay pending)
                log.exception("engine.events.batch_failed", stream=as_text(stream))
        if time.monotonic() >= self._next_recovery:
            self._next_recovery = time.monotonic() + self.settings.engine_recovery_seconds
            handled += await self.recover_pending(list(streams))
        return handled

    async def _linger(self, replies: list[Any]) -> list[Any]:
        """Wait a few milliseconds more for streams whose batch ends no attempt.

        A worker sends a quick task's ``started`` and ``finished`` in one pipeline, but
        the engine, blocked on its read, often wakes between the two: the ``started``
        alone then costs a transaction of its own (six statements and a commit) on every
        chain step. Reading those streams once more, for at most ``LINGER_MS``, lets the
        ``finished`` join its ``started`` in one batch; a task that runs longer has its
        start recorded that much later (its ``started_at`` is the worker's clock)."""
        waiting: dict[Any, Any] = {
            as_text(stream): ">" for stream, entries in replies if not _ends_attempts(entries)
        }
        if not waiting:
            return replies
        try:
            more = await self.redis.xreadgroup(
                keys.ENGINE_GROUP, self.name, waiting, count=EVENTS_BATCH, block=LINGER_MS
            )
        except ResponseError as error:
            if is_nogroup(error):
                return replies  # the next round re-creates the groups
            raise
        merged = {as_text(stream): list(entries) for stream, entries in replies}
        for stream, entries in cast(list[Any], more or []):
            merged.setdefault(as_text(stream), []).extend(entries)
        return [[stream, entries] for stream, entries in merged.items()]

    async def recover_pending(self, streams: list[str]) -> int:
        """Retry events left unacknowledged - by a batch that failed, or by an engine replica
        that died - one at a time, so one poison event cannot block its neighbours. An
        event that keeps failing is set aside (dead-lettered) after a few tries."""
        handled = 0
        idle_ms = int(self.settings.engine_recovery_seconds * 1000)
        for stream in streams:
            reply = await self.redis.xautoclaim(
                stream, keys.ENGINE_GROUP, self.name, idle_ms, "0-0", count=100
            )
            for entry_id, fields in reply[1]:
                if fields is None:
                    continue
                try:
                    handled += await self._apply_stream(stream, [(entry_id, fields)], replay=True)
                    self._failures.pop(entry_id, None)
                except Exception as error:  # counted, then dead-lettered
                    if outage_of(error) is not None:
                        raise  # not the event's fault: it must not be dead-lettered
                    tries = self._failures[entry_id] = self._failures.get(entry_id, 0) + 1
                    log.warning(
                        "engine.event.retry_failed",
                        stream=stream,
                        entry_id=entry_id,
                        tries=tries,
                        error=type(error).__name__,
                    )
                    if tries >= DEAD_LETTER_DELIVERIES:
                        metrics.ENGINE_EVENTS_DEAD_LETTERED.inc()
                        await self.redis.xack(stream, keys.ENGINE_GROUP, entry_id)
                        self._failures.pop(entry_id, None)
                        log.error(
                            "engine.event.dead_letter",
                            stream=stream,
                            entry_id=entry_id,
                            # not event=: structlog's first argument is the event name
                            payload=fields.get(EVENT_FIELD, "")[:2000],
                        )
        return handled

    async def _apply_stream(
        self, stream: str, entries: list[tuple[str, dict[str, str]]], *, replay: bool = False
    ) -> int:
        tenant_id = uuid.UUID(stream.split("{", 1)[1].split("}", 1)[0])
        events: list[TaskEvent] = []
        for _, fields in entries:
            try:
                events.append(TaskEvent.from_json(fields[EVENT_FIELD]))
            except (KeyError, ValueError, TypeError):
                log.warning("engine.event.malformed", tenant_id=str(tenant_id))
        # Attempts that ended free slots: the replica that admits this tenant refills them
        # in the same transaction (no wake-up hop through Redis and the admission loop),
        # at most as many as came free, so the tenant's share of the fair round is kept.
        freed = sum(1 for e in events if e.kind in ("finished", "released"))
        quota = 0
        hosted: dict[str, frozenset[str]] = {}
        if freed and self.owns(tenant_id):
            quota = (await self._quotas({tenant_id}))[tenant_id][0]
            hosted = await self._hosted_queues({str(tenant_id)})  # before the commit
        entry_ids = [entry_id for entry_id, _ in entries]
        outbox_key = keys.engine_outbox(str(tenant_id), entry_ids[0])
        if replay:
            await self._recover_outbox(tenant_id, outbox_key)
        admission: Admission | None = None
        # Reused plans: the batch's statements look rows up by key, whatever the parameters,
        # and planning each execution cost more than running it (docs/architecture.md).
        async with tenant_transaction(self.sessionmaker, tenant_id, plan_cache="auto") as session:
            effects = await apply_events(
                session, tenant_id, events, self.plans, lost_before=self.lost_before()
            )
            if quota > 0:
                admission = await admit(
                    session,
                    tenant_id,
                    self.plans,
                    max_concurrent=quota,
                    limit=freed,
                    settings=self.settings,
                    try_lock=True,
                    held=effects.runs,
                )
            if admission is not None and admission.messages:
                # Before the commit: if the engine dies between the commit and the
                # publication, the batch's replay publishes them (backend/engine/outbox.py).
                await outbox.write(self.redis, outbox_key, admission.messages)
        if admission is not None:
            # What is still ready (beyond the freed slots, or later: a retry's backoff)
            # goes to the fair round; the admission saw this transaction's own changes.
            effects.due_at = admission.next_due
        elif freed:
            effects.due(utcnow())  # a slot came free: admit the tenant's next tasks
        await self._after_commit(
            tenant_id, stream, entry_ids, outbox_key, admission, hosted, effects
        )
        return len(events)

    async def _after_commit(
        self,
        tenant_id: uuid.UUID,
        stream: str,
        entry_ids: list[str],
        outbox_key: str,
        admission: Admission | None,
        hosted: dict[str, frozenset[str]],
        effects: Effects,
    ) -> None:
        """Publish the batch's dispatches and acknowledge its entries, in one atomic step.

        Acknowledged only after the commit holding their effects: a crash before this
        replays them, and attempt fencing makes the replay change nothing. The dispatch
        and the acknowledgement go together, so no acknowledged batch ever lacks its
        dispatch; one that died before both is published by its replay.
        """
        messages = admission.messages if admission is not None else []
        if messages:
            await self._dispatch(
                tenant_id, messages, hosted[str(tenant_id)], outbox_key, ack=entry_ids
            )
        else:
            await self.redis.xack(stream, keys.ENGINE_GROUP, *entry_ids)
        await self.after_effects(tenant_id, effects)

    async def _recover_outbox(self, tenant_id: uuid.UUID, outbox_key: str) -> None:
        """An outbox was left behind (its batch is replayed, or the sweep found it stale):
        publish the dispatches its engine committed and did not publish; drop those whose
        transaction never committed."""
        messages = await outbox.pending(self.redis, outbox_key)
        if not messages:
            await self.redis.zrem(keys.engine_outboxes(), outbox_key)  # published or expired
            return
        async with self.tenant_transaction(tenant_id) as session:
            found = await outbox.committed(session, tenant_id, messages)
            hosted = await self._hosted_queues({str(tenant_id)})
            # Published while the rows are locked: the dispatches cannot start or change
            # under us between the reading and the publication.
            published = await outbox.publish_once(
                self._publish_once, str(tenant_id), outbox_key, found, hosted[str(tenant_id)]
            )
        if published:
            metrics.TASKS_DISPATCHED.labels(metrics.TENANTS.label(tenant_id)).inc(published)
        log.warning(
            "engine.outbox.recovered",
            tenant_id=str(tenant_id),
            published=published,
            dropped=len(messages) - len(found),
        )

    async def recover_stale_outboxes(self) -> int:
        """Recover the outboxes of the tenants this engine owns that nobody published for
        ``outbox.STALE_SECONDS`` (an engine died or lost Redis between a commit and its
        publication); how many were recovered."""
        recovered = 0
        for outbox_key in await outbox.stale(self.redis):
            tenant_id = uuid.UUID(keys.outbox_tenant(outbox_key))
            if self.owns(tenant_id):
                await self._recover_outbox(tenant_id, outbox_key)
                recovered += 1
        return recovered

    async def _dispatch(
        self,
        tenant_id: uuid.UUID,
        messages: list[TaskMessage],
        hosted: frozenset[str],
        outbox_key: str,
        *,
        ack: Sequence[str] = (),
    ) -> None:
        """Publish committed dispatches (once) with the acknowledgement of the events that
        made them, if any. If Redis fails here the outbox stays: whether the script ran
        cannot be told (a reply lost after it ran), so nothing is undone - the recovery
        publishes what is still unpublished once Redis answers again."""
        published = await outbox.publish_once(
            self._publish_once, str(tenant_id), outbox_key, messages, hosted, ack
        )
        metrics.TASKS_DISPATCHED.labels(metrics.TENANTS.label(tenant_id)).inc(published)

    async def after_effects(self, tenant_id: uuid.UUID, effects: Effects) -> None:
        effects.samples.record(tenant_id)  # committed: count it (once)
        await publish_updates(self.redis, tenant_id, effects.updates)
        if effects.due_at is not None:
            await mark_tenant_due(self.redis, tenant_id, effects.due_at)
        if effects.cancel:
            await publish_cancel(self.redis, tenant_id, effects.cancel)
        if effects.finished_runs:
            # One line per batch, not per run: at a few thousand runs a second, a log line
            # each was ~5 % of the engine's CPU.
            log.info(
                "engine.runs.finished",
                tenant_id=str(tenant_id),
                count=len(effects.finished_runs),
                runs={str(r.id): str(r.status) for r in effects.finished_runs[:LOGGED_RUNS]},
            )

    # -- bounded Redis ------------------------------------------------------------------
    async def _trim_loop(self) -> None:
        while not self._stopping.is_set():
            await self._guarded("trim", self.trim_round())
            await wait_event(self._stopping, self.settings.stream_trim_seconds)

    async def trim_round(self) -> trim.TrimReport:
        """Trim every stream below its oldest unsettled entry (``engine/trim.py``); keep
        the history tables' partitions (``retention/partitions.py``) when it is time."""
        report = await trim.trim_all(self.redis, self._trim)
        if time.monotonic() >= self._next_partitions:
            await partitions.maintain(self.sessionmaker, self.settings)
            self._next_partitions = time.monotonic() + self.settings.partition_maintenance_seconds
        return report

    # -- sweeps -------------------------------------------------------------------------
    async def _sweep_loop(self) -> None:
        while not self._stopping.is_set():
            await self._guarded("sweep", self.sweep())
            await wait_event(self._stopping, 1.0)

    async def sweep(self) -> None:
        """Deadlines, silent workers, Redis data loss."""
        epoch = await self.redis.get(keys.engine_epoch())
        if epoch is None:
            await self.reconcile_redis()
            epoch = await self.redis.get(keys.engine_epoch())
        if self._resync_wanted:
            await self.resync()
        await self.recover_stale_outboxes()
        analysed = await refresh_queue_statistics(self.sessionmaker)
        if analysed:
            log.debug("engine.statistics.refreshed", tables=analysed)
        if time.monotonic() >= self._next_credential_sweep:
            self._next_credential_sweep = (
                time.monotonic() + self.settings.worker_credential_sweep_seconds
            )
            await self.remove_ended_worker_users()
        lost_since = _epoch_time(epoch)
        for raw in await self.redis.smembers(keys.engine_tenants()):
            tenant_id = uuid.UUID(as_text(raw))
            if self.owns(tenant_id):
                await self._sweep_tenant(tenant_id, lost_since)

    async def remove_ended_worker_users(self) -> int:
        """Remove, from PostgreSQL's truth, the Redis users of revoked or expired worker
        credentials not yet confirmed gone (``redis_removed_at``), and record each removal
        in its tenant's transaction. Every expiry, and a revocation whose Redis step failed,
        end here; a Redis error leaves the rest to the next sweep. Returns the count."""
        async with self.sessionmaker() as session:
            rows = (await session.execute(WORKER_USERS_TO_REMOVE)).all()
        by_tenant: dict[uuid.UUID, list[Any]] = {}
        for row in rows:
            if self.owns(row.tenant_id):
                by_tenant.setdefault(row.tenant_id, []).append(row)
        removed = 0
        for tenant_id, ended in by_tenant.items():
            for row in ended:
                await worker_acl.remove_tenant_worker_user(self.redis, row.redis_user)
                log.info(
                    "workers.credential.user_removed", tenant_id=str(tenant_id), user=row.redis_user
                )
            async with self.tenant_transaction(tenant_id) as session:
                await WorkerCredentialRepository(session, tenant_id).mark_redis_removed(
                    [row.id for row in ended], utcnow()
                )
            removed += len(ended)
        return removed

    async def _sweep_tenant(self, tenant_id: uuid.UUID, redis_lost_at: float | None) -> None:
        now = utcnow()
        lost_before = self.lost_before()
        # The deadline backstop waits at least as long as a lost judgment needs, so that an
        # attempt whose worker died is always called lost, never timed out; the grace lets
        # a live worker's own timeout report come first.
        grace = timedelta(
            seconds=max(self.settings.task_deadline_grace_seconds, self.settings.lost_after_seconds)
        )
        rows: list[Any] = []
        async with self.tenant_transaction(tenant_id) as session:
            if lost_before is not None:  # else the engine has not heard enough to judge
                if redis_lost_at is not None:
                    await self._requeue_stranded(session, tenant_id, redis_lost_at, lost_before)
                overdue = {"tenant": tenant_id, "lost": lost_before, "late": now - grace}
                rows = list((await session.execute(_OVERDUE, overdue)).all())
            failures = [
                (
                    row.id,
                    row.attempt,
                    row.why,
                    "task timed out"
                    if row.why == "timeout"
                    else "worker stopped answering (no heartbeat)",
                )
                for row in rows
            ]
            effects = Effects()
            if failures:
                effects = await fail_tasks(session, tenant_id, failures, self.plans)
            expired = (await session.execute(_EXPIRED_RUNS, {"tenant": tenant_id})).all()
            for row in expired:
                effects.cancel.extend(await _expire_run(session, tenant_id, row.id))
                await _announce_expired(session, tenant_id, row.id, row.job_id)
                effects.samples.run_finished("failed")
                effects.updates.append(
                    {
                        "type": "run",
                        "run_id": str(row.id),
                        "job_id": str(row.job_id),
                        "status": "failed",
                        "reason": "timeout",
                    }
                )
            busy = (await session.execute(_BUSY, {"tenant": tenant_id})).scalar_one()
        await self.after_effects(tenant_id, effects)
        if not busy:
            await self.redis.srem(keys.engine_tenants(), str(tenant_id))
            if await self._events_unread(str(tenant_id)):
                # Entries the events loop has not read (a late or repeated result) or not
                # acknowledged: keep reading the tenant's stream until they are applied.
                await self.redis.sadd(keys.engine_tenants(), str(tenant_id))

    async def _events_unread(self, tenant: str) -> bool:
        """Whether the tenant's events stream holds entries the engine has not yet read or
        acknowledged (checked after leaving the set of tenants it reads)."""
        stream = keys.events_stream(tenant)
        try:
            info = await self.redis.xinfo_stream(stream)
            groups = await self.redis.xinfo_groups(stream)
        except ResponseError:
            return False  # no stream: nothing to read
        last = _entry_id(as_text(info["last-generated-id"]))
        for group in groups:
            if as_text(group["name"]) == keys.ENGINE_GROUP:
                read = _entry_id(as_text(group["last-delivered-id"]))
                return last > read or int(group["pending"]) > 0
        return int(info["length"]) > 0

    async def reconcile_redis(self) -> None:
        """Redis came back empty (its epoch key is gone).

        Nothing is dispatched again *now*: a worker that survived the outage may still be
        running an attempt whose message Redis forgot, and will report it (heartbeats,
        result) on the re-created events stream. The epoch key records the instant of the
        loss; the sweep then treats attempts that give no sign of life as lost -
        running ones by their heartbeat, dispatched-but-not-started ones once they have
        been silent for ``lost_after_seconds`` after the loss (:meth:`_requeue_stranded`)
        - and those go back to admission without using up an attempt.

        The listening clock starts again: with the data went the set of tenants whose
        events the engine reads, so since the loss it has heard nothing of them (its
        events loop idled without failing) until the resync below names them again. A
        silence it could not hear must not be taken for death (see the top).
        """
        await self.redis.set(
            keys.engine_epoch(), json.dumps({"engine": self.name, "at": time.time()}), nx=True
        )
        self._heard(ok=False, after_failure=True, took=0.0)
        await self.resync()
        await self._restore_worker_users()
        log.warning("engine.redis_data_lost", engine=self.name)
        if self.on_redis_lost is not None:
            await self.on_redis_lost()

    async def _restore_worker_users(self) -> None:
        """Redis lost its data, perhaps its ACL users too: tenant-hosted workers get their
        users back from PostgreSQL (active credentials only)."""
        async with self.sessionmaker() as session:
            tenants = await TenantDirectory(session).all()
        for tenant in tenants:
            async with self.tenant_transaction(tenant.id) as session:
                credentials = await WorkerCredentialRepository(session, tenant.id).active()
            if credentials:
                await worker_acl.restore_tenant_worker_users(
                    self.redis, [acl_user(c) for c in credentials]
                )

    async def resync(self) -> None:
        """Tell Redis again which tenants have work: due times of queued tasks, tenants
        with tasks in flight (whose events must be read). Idempotent; run at start, after
        an outage (a wake-up sent while Redis was down is lost) and after data loss."""
        self._resync_wanted = False
        async with self.sessionmaker() as session:
            tenants = await TenantDirectory(session).all()
        busy: list[str] = []
        for tenant in tenants:
            async with self.tenant_transaction(tenant.id) as session:
                next_ready = await next_ready_at(session, tenant.id)
                in_flight = (await session.execute(_BUSY, {"tenant": tenant.id})).scalar_one()
            if next_ready is not None:
                await mark_tenant_due(self.redis, tenant.id, _aware(next_ready))
            if in_flight:
                busy.append(str(tenant.id))
        if busy:
            await self.redis.sadd(keys.engine_tenants(), *busy)

    async def _requeue_stranded(
        self,
        session: AsyncSession,
        tenant_id: uuid.UUID,
        redis_lost_at: float,
        lost_before: datetime,
    ) -> None:
        """Dispatched before Redis lost its data and silent since: the message is gone."""
        lost_at = datetime.fromtimestamp(redis_lost_at, UTC)
        if lost_at > lost_before:
            return  # not silent for long enough yet
        moved = (
            await session.execute(_REQUEUE_STRANDED, {"tenant": tenant_id, "lost_at": lost_at})
        ).all()
        if moved:
            metrics.RECONCILER_REDISPATCHED.inc(len(moved))
            log.warning("engine.reconciled", tenant_id=str(tenant_id), redispatched=len(moved))

            async def wake_admission() -> None:
                # After the commit: woken before it, admission could claim before the tasks
                # were queued again, find nothing, drop the tenant from the due index, and
                # leave them stranded until something else woke it.
                await mark_tenant_due(self.redis, tenant_id, utcnow())

            after_commit(session, wake_admission)


def _epoch_time(raw: str | bytes | None) -> float | None:
    """When Redis last lost its data, from the epoch key (None: not known)."""
    if raw is None:
        return None
    try:
        return float(json.loads(raw)["at"])
    except (ValueError, KeyError, TypeError):
        return None  # an epoch written by an older engine: no loss to act on


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)


async def _expire_run(
    session: AsyncSession, tenant_id: uuid.UUID, run_id: uuid.UUID
) -> list[tuple[uuid.UUID, int]]:
    """Fail a run whose own deadline passed; stop its in-flight tasks."""
    stop = (await session.execute(_STOP_TASKS, {"tenant": tenant_id, "run": run_id})).all()
    await session.execute(
        text(
            "UPDATE runs SET status = 'failed', reason = 'timeout', finished_at = now() "
            "WHERE tenant_id = :tenant AND id = :run"
        ),
        {"tenant": tenant_id, "run": run_id},
    )
    return [(row.id, row.attempt) for row in stop if row.dispatched_at is not None]


async def _announce_expired(
    session: AsyncSession, tenant_id: uuid.UUID, run_id: uuid.UUID, job_id: uuid.UUID
) -> None:
    """A run failed by its deadline reached a final state: the same hook as the event path
    (``events._announce_finished``): triggers and notifications record it, nothing slow."""
    finished = FinishedRun(run_id, job_id, RunStatus.failed, "timeout", utcnow())
    await runs_finished.fire(session, tenant_id, [finished])


# Silence wins over the deadline: a worker that stopped answering is lost, not slow. The
# deadline check has a grace period so that a live worker's own timeout report comes first.
_OVERDUE = text(
    """
    SELECT id, attempt, CASE WHEN heartbeat_at < :lost THEN 'lost' ELSE 'timeout' END AS why
      FROM task_runs
     WHERE tenant_id = :tenant AND status = 'running'
       AND (deadline_at < :late OR heartbeat_at < :lost)
    """
)
_EXPIRED_RUNS = text(
    """
    SELECT id, job_id FROM runs
     WHERE tenant_id = :tenant AND status IN ('queued', 'running')
       AND deadline_at < now()
    """
)
_STOP_TASKS = text(
    """
    UPDATE task_runs SET status = 'cancelled', reason = 'run_timeout',
           finished_at = now()
     WHERE tenant_id = :tenant AND run_id = :run
       AND status IN ('pending', 'queued', 'running')
    RETURNING id, attempt, dispatched_at
    """
)
# (a fire prepared ahead - its tasks queued without ready_at - is not work in flight)
_BUSY = text(
    """
    SELECT EXISTS (SELECT 1 FROM task_runs WHERE tenant_id = :tenant
                   AND status IN ('queued', 'running') AND ready_at IS NOT NULL)
    """
)
# Dispatched before Redis lost its data, never started, no sign of life since: the message
# went with the data. Back to admission; the hand-back does not use up an attempt.
_REQUEUE_STRANDED = text(
    """
    UPDATE task_runs
       SET dispatched_at = NULL, ready_at = now(), max_attempts = max_attempts + 1
     WHERE tenant_id = :tenant AND status = 'queued'
       AND dispatched_at < :lost_at
       AND (heartbeat_at IS NULL OR heartbeat_at < :lost_at)
    RETURNING id
    """
)
