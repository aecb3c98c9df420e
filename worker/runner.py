"""The worker process: read tenants' dispatch streams fairly, run tasks, report back.

Shaped after arq's worker loop:

- **Fair reads.** ``XREADGROUP`` over several keys serves the first key that has entries,
  so it is not fair by itself. Each pass asks every active tenant's stream for at most an
  equal share of the free slots, starting from a rotating offset, in one pipelined round
  trip; only when a pass finds nothing does the worker block on all streams.
- **Results are never lost to shutdown.** Finished events are published under
  ``asyncio.shield`` and the entry is acknowledged only after its result is in the events
  stream. A crash in between leaves the entry pending; whoever claims it reports the
  attempt as lost and the engine's fencing ignores the duplicate.
- **Heartbeats.** Running attempts send a heartbeat event and re-claim their own entry
  (``XCLAIM ... JUSTID``) so its idle time resets and no other worker steals it. Entries
  idle past the visibility timeout belong to a dead worker: ``XAUTOCLAIM`` takes them and
  reports the attempt ``lost``; the engine retries it under the task's policy.
- **Two-stage shutdown.** SIGTERM stops reading and lets running tasks finish for the
  grace period; what is still running then is cancelled (process groups killed) and
  handed back (``released``), so another worker runs it without using up an attempt.
- **Outages.** Every loop runs its iterations under a ``Guard``
  (``kernel.dependencies``): a Redis outage of any length is logged, counted and
  retried with capped exponential backoff. Running tasks go on; a finished attempt's
  result is kept and re-sent until Redis takes it, and the attempt keeps heartbeating
  meanwhile, so the engine never mistakes it for lost and runs it twice.
- Workers never connect to PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import time
from dataclasses import dataclass, field
from importlib.metadata import version as _version
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from kernel import metrics
from kernel.dependencies import Backoff, Guard
from kernel.secrets import TransitKeys, execute_with_secrets
from kernel.wire import keys
from kernel.wire.protocol import (
    EVENT_FIELD,
    TASK_FIELD,
    ExecutionResult,
    LogLine,
    TaskEvent,
    TaskMessage,
)
from kernel.wire.streams import as_text, ensure_group, is_nogroup
from worker.executors.base import ExecutorPolicy
from worker.executors.registry import executor_for

log = structlog.get_logger(__name__)

VERSION = _version("baton")  # reported in heartbeats (the dashboard shows it)
LOG_FLUSH_SECONDS = 0.1
LOG_FLUSH_LINES = 200
LOG_BUFFER_MAX_LINES = 10_000  # per attempt, while Redis cannot take them
# A task still running this long after its start is reported ``started`` on its own; one
# that ends sooner sends started, finished and its ack in one pipeline.
START_COALESCE_SECONDS = 0.005
# The stream list is re-read (SMEMBERS) when a tenant set's size changes (SCARD, sent in
# the poll's own pipeline), after NOGROUP, and at least this often.
STREAMS_REFRESH_SECONDS = 2.0


@dataclass(frozen=True)
class WorkerConfig:
    queues: tuple[str, ...] = ("default",)
    concurrency: int = 8
    heartbeat_seconds: float = 5.0
    visibility_timeout_seconds: float = 30.0
    shutdown_grace_seconds: float = 30.0
    policy: ExecutorPolicy = field(default_factory=ExecutorPolicy)
    # Keys that open the secrets sealed into task messages (none: tasks using secrets fail).
    transit_keys: TransitKeys = field(default_factory=TransitKeys)
    name: str = field(default_factory=lambda: f"worker-{socket.gethostname()}-{os.getpid()}")
    # Set for a tenant-hosted worker (``baton worker --credential``): it reads only this
    # tenant's streams of its queues and uses only keys under the tenant's hash tag, the
    # only ones its Redis user may touch. Unset: the shared pool, which discovers tenants.
    tenant_id: str | None = None


@dataclass
class _Running:
    stream: str
    entry_id: str
    message: TaskMessage
    task: asyncio.Task[None] | None = None
    cancelled_by_user: bool = False
    # Its task has taken its first step. A task cancelled before that never runs its body,
    # so it would neither report nor free its slot: a cancel then only sets the flag.
    begun: bool = False
    released: bool = False
    ran: bool = False  # its executor was started (not cancelled before it ran)
    started_sent: bool = False  # the ``started`` event is in, or on its way to, the stream
    started: asyncio.Future[list[Any]] | None = None  # that ``started`` XADD, if on its own


class Worker:
    def __init__(self, redis: Redis, config: WorkerConfig) -> None:
        self.redis = redis
        self.config = config
        self.name = config.name
        self.running: dict[tuple[str, int], _Running] = {}
        # Finished attempts whose result Redis has not taken yet (an outage): they go on
        # heartbeating so that nobody takes them for lost.
        self.reporting: dict[tuple[str, int], _Running] = {}
        self._stopping = asyncio.Event()
        # Set once draining is over: the helper loops (heartbeats go on while draining) end.
        self._closing = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._groups: set[str] = set()
        self._round = 0
        self._background: set[asyncio.Task[None]] = set()
        self._pipeline = _Pipeliner(redis)
        self._stream_list: list[str] | None = None
        self._stream_list_at = 0.0
        self._tenant_counts: dict[str, int] = {}

    # -- lifecycle ----------------------------------------------------------------------
    def stop(self) -> None:
        """Stop reading new work (first stage of shutdown)."""
        self._stopping.set()
        self._slot_freed.set()

    async def run(self) -> None:
        """Run until :meth:`stop`, then drain within the grace period."""
        log.info(
            "worker.started",
            worker=self.name,
            queues=list(self.config.queues),
            concurrency=self.config.concurrency,
        )
        helpers = [
            asyncio.create_task(self._cancel_listener()),
            asyncio.create_task(self._heartbeat_loop()),
            asyncio.create_task(self._claim_loop()),
        ]
        metrics.track_worker(self)  # busy/idle slot gauges, read when scraped
        guard = Guard("worker.poll")
        try:
            while not self._stopping.is_set():
                await guard.run(self._poll_or_stop())
            await self._drain()
        finally:
            self._closing.set()
            await _stop_helpers(helpers)
            metrics.untrack_worker(self)
            with contextlib.suppress(RedisError, OSError):
                await self.redis.delete(self._heartbeat_key())
            log.info("worker.stopped", worker=self.name)

    async def _poll_or_stop(self) -> None:
        try:
            await self.poll()
        except AuthenticationError as error:
            # The credential was revoked or expired (its Redis user is gone): no retry can
            # succeed, so stop reading instead of spinning.
            log.error("worker.credential_refused", worker=self.name, error=str(error))
            self.stop()

    async def _drain(self) -> None:
        tasks = [r.task for r in self.running.values() if r.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.config.shutdown_grace_seconds)
            for record in list(self.running.values()):
                if record.task in pending:
                    record.released = True
                    record.task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=self.config.shutdown_grace_seconds)

    # -- reading ------------------------------------------------------------------------
    async def _streams(self) -> list[str]:
        """The streams to read: cached, re-read when stale (see STREAMS_REFRESH_SECONDS)."""
        stale = time.monotonic() - self._stream_list_at > STREAMS_REFRESH_SECONDS
        if self._stream_list is None or stale:
            self._stream_list = await self._read_streams()
            self._stream_list_at = time.monotonic()
        return self._stream_list

    async def _read_streams(self) -> list[str]:
        tenant = self.config.tenant_id
        streams: list[str] = []
        if tenant is not None:  # tenant-hosted: its own streams, no global discovery
            streams = [keys.queue_stream(tenant, queue) for queue in self.config.queues]
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for queue in self.config.queues:
                    pipe.smembers(keys.queue_tenants(queue))
                replies = await pipe.execute()
            for queue, members in zip(self.config.queues, replies, strict=True):
                self._tenant_counts[queue] = len(members)
                for tenant_id in sorted(as_text(m) for m in members):
                    streams.append(keys.queue_stream(tenant_id, queue))
        for stream in streams:
            if stream not in self._groups:
                await ensure_group(self.redis, stream, keys.WORKERS_GROUP)
                self._groups.add(stream)
        return streams

    def _forget_streams(self) -> None:
        """Read the stream list again on the next pass."""
        self._stream_list = None

    async def poll(self) -> int:
        """One pass: fill free slots fairly from the tenants' streams; block if idle."""
        free = self.config.concurrency - len(self.running)
        if free <= 0:
            self._slot_freed.clear()
            await self._slot_freed.wait()
            return 0
        streams = await self._streams()
        if not streams:
            await asyncio.sleep(0.2)
            return 0
        self._round += 1
        offset = self._round % len(streams)
        ordered = streams[offset:] + streams[:offset]
        share = max(1, free // len(ordered))
        asked = ordered[:free] if share == 1 else ordered
        # The shared pool learns in the same round trip whether a queue's tenant set changed.
        # The reads share the pipeline of this loop tick with the start checks and reports
        # of running attempts.
        counted = self.config.queues if self.config.tenant_id is None else ()
        commands: list[tuple[Any, ...]] = [
            ("xreadgroup", keys.WORKERS_GROUP, self.name, {stream: ">"}, share) for stream in asked
        ]
        commands.extend(("scard", keys.queue_tenants(queue)) for queue in counted)
        replies = await self._pipeline.send(commands, raise_on_error=False)
        counts = replies[len(asked) :]
        replies = replies[: len(asked)]
        for queue, count in zip(counted, counts, strict=True):
            if isinstance(count, Exception):
                raise count
            if count != self._tenant_counts.get(queue):
                self._forget_streams()
        started = 0
        for reply in replies:
            if isinstance(reply, ResponseError):
                self._on_nogroup(reply)
                continue
            started += self._start_all(reply)
        if started == 0:
            started = await self._block(ordered)
        return started

    async def _block(self, streams: list[str]) -> int:
        try:
            reply = await self.redis.xreadgroup(
                keys.WORKERS_GROUP, self.name, {s: ">" for s in streams[:512]}, count=1, block=500
            )
        except ResponseError as error:
            return self._on_nogroup(error)
        return self._start_all(reply)

    def _on_nogroup(self, error: ResponseError) -> int:
        if not is_nogroup(error):
            raise error
        self._groups.clear()  # Redis lost its data: recreate groups on the next pass
        self._forget_streams()
        return 0

    def _start_all(self, reply: Any) -> int:
        started = 0
        for stream, entries in reply or []:
            for entry_id, fields in entries:
                started += self._start(str(stream), str(entry_id), fields)
        return started

    def _start(self, stream: str, entry_id: str, fields: dict[str, str]) -> int:
        try:
            message = TaskMessage.from_json(fields[TASK_FIELD])
        except (KeyError, ValueError, TypeError):
            log.error("worker.message.malformed", stream=stream, entry_id=entry_id)
            ack = asyncio.create_task(self._ack(stream, entry_id))
            self._background.add(ack)
            ack.add_done_callback(self._background.discard)
            return 0
        record = _Running(stream=stream, entry_id=entry_id, message=message)
        self.running[(message.task_run_id, message.attempt)] = record
        record.task = asyncio.create_task(self._execute(record))
        return 1

    # -- executing ----------------------------------------------------------------------
    async def _execute(self, record: _Running) -> None:
        record.begun = True
        message = record.message
        # Each asyncio task has its own copy of the context: every log line of this attempt
        # (executors' included) carries its ids.
        structlog.contextvars.bind_contextvars(
            tenant_id=message.tenant_id,
            run_id=message.run_id,
            task_run_id=message.task_run_id,
            task=message.task_name,
            attempt=message.attempt,
        )
        logs = _LogBuffer(self, message)
        result: ExecutionResult | None
        announce: asyncio.TimerHandle | None = None
        try:
            try:
                cancelled = await self._cancelled_before_start(message)
            except (RedisError, OSError) as error:
                # Not run: its entry stays pending, and whoever claims it after the
                # visibility timeout reports it lost (retried without using an attempt).
                log.warning("worker.start_failed", error=type(error).__name__)
                return
            if cancelled or record.cancelled_by_user:
                log.info("worker.attempt.cancelled_before_start")
                result = ExecutionResult.failed("cancelled", reason="cancelled")
            else:
                # Still running after the coalescing window: say ``started`` on its own.
                announce = asyncio.get_running_loop().call_later(
                    START_COALESCE_SECONDS, self._announce_start, record
                )
                record.ran = True
                result = await self._run_executor(record, logs)
        except asyncio.CancelledError:
            result = (
                None if record.released else ExecutionResult.failed("cancelled", reason="cancelled")
            )
        finally:
            if announce is not None:
                announce.cancel()
            logs.stop()
            self.running.pop((message.task_run_id, message.attempt), None)
            self._slot_freed.set()
        await asyncio.shield(self._report(record, logs, result))

    async def _run_executor(self, record: _Running, logs: _LogBuffer) -> ExecutionResult:
        message = record.message
        executor = executor_for(str(message.spec.get("type", "")), self.config.policy)
        timeout = message.timeout_seconds
        try:
            async with asyncio.timeout(timeout):  # not wait_for (kernel/runtime/waits.py)
                return await execute_with_secrets(
                    executor, message, logs.write, self.config.transit_keys
                )
        except TimeoutError:
            return ExecutionResult.failed(f"timed out after {timeout:g} s", reason="timeout")
        except asyncio.CancelledError:
            if record.cancelled_by_user:
                return ExecutionResult.failed("cancelled", reason="cancelled")
            raise

    async def _report(
        self, record: _Running, logs: _LogBuffer, result: ExecutionResult | None
    ) -> None:
        """Send the attempt's result; through an outage, again and again until Redis takes
        it (with backoff), heartbeating meanwhile. Only a worker that stops for good with
        the result still unsent loses it (the engine then judges the attempt lost)."""
        message = record.message
        key = (message.task_run_id, message.attempt)
        if result is None:
            event = self._event(message, "released")
        else:
            event = self._event(message, "finished", result=_result_dict(result))
        backoff = Backoff()
        self.reporting[key] = record
        try:
            while True:
                try:
                    await logs.flush()
                    if record.started is not None:
                        # ``started`` went out on its own: let it land first (in order).
                        await asyncio.wait([record.started])
                    # One pipeline, shared with every report of this loop tick; the result
                    # is in the events stream before the ack (started first, if unsent).
                    stream = keys.events_stream(message.tenant_id)
                    commands: list[tuple[Any, ...]] = []
                    if record.ran and not record.started_sent:
                        started = self._event(message, "started")
                        commands.append(("xadd", stream, {EVENT_FIELD: started.to_json()}))
                    commands.append(("xadd", stream, {EVENT_FIELD: event.to_json()}))
                    commands.append(("xack", record.stream, keys.WORKERS_GROUP, record.entry_id))
                    await self._pipeline.send(commands)
                    record.started_sent = True
                    return
                except (RedisError, OSError) as error:
                    log.warning(
                        "worker.report_retrying",
                        task_run_id=message.task_run_id,
                        error=type(error).__name__,
                    )
                    await asyncio.sleep(backoff.next_delay())
        finally:
            self.reporting.pop(key, None)

    def _event(self, message: TaskMessage, kind: str, **extra: Any) -> TaskEvent:
        return TaskEvent(
            kind=kind,  # type: ignore[arg-type]
            task_run_id=message.task_run_id,
            run_id=message.run_id,
            attempt=message.attempt,
            worker=self.name,
            ts=time.time(),
            **extra,
        )

    async def _cancelled_before_start(self, message: TaskMessage) -> bool:
        """Whether the attempt was cancelled before this worker read its message (then it
        must not run). The check of every attempt picked up in one pass shares a round
        trip."""
        marker = keys.cancelled_attempt(message.tenant_id, message.task_run_id, message.attempt)
        [cancelled] = await self._pipeline.send([("exists", marker)])
        return bool(cancelled)

    def _announce_start(self, record: _Running) -> None:
        """Send ``started`` for an attempt still running after the coalescing window, in
        the next pipeline. Should Redis not take it, the report sends it again."""
        if record.started_sent:
            return
        record.started_sent = True
        event = self._event(record.message, "started")
        stream = keys.events_stream(record.message.tenant_id)
        sent = record.started = self._pipeline.submit(
            [("xadd", stream, {EVENT_FIELD: event.to_json()})]
        )

        def settled(future: asyncio.Future[list[Any]]) -> None:
            if future.cancelled() or future.exception() is not None:
                record.started_sent = False

        sent.add_done_callback(settled)

    async def _publish(self, message: TaskMessage, kind: str, **extra: Any) -> None:
        event = self._event(message, kind, **extra)
        await self.redis.xadd(keys.events_stream(message.tenant_id), {EVENT_FIELD: event.to_json()})

    async def _ack(self, stream: str, entry_id: str) -> None:
        await self.redis.xack(stream, keys.WORKERS_GROUP, entry_id)

    # -- background duties --------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        guard = Guard("worker.heartbeat")
        while not self._closing.is_set():
            await asyncio.sleep(self.config.heartbeat_seconds)
            await guard.run(self._heartbeat())

    async def _heartbeat(self) -> None:
        records = [*self.running.values(), *self.reporting.values()]
        async with self.redis.pipeline(transaction=False) as pipe:
            for record in records:
                message = record.message
                event = self._event(message, "heartbeat")
                pipe.xadd(keys.events_stream(message.tenant_id), {EVENT_FIELD: event.to_json()})
                pipe.xclaim(
                    record.stream, keys.WORKERS_GROUP, self.name, 0, [record.entry_id], justid=True
                )
                # Pub/sub is at most once: a cancel published while this worker was
                # (re)subscribing is still found here, at most a heartbeat late.
                pipe.exists(
                    keys.cancelled_attempt(message.tenant_id, message.task_run_id, message.attempt)
                )
            now = time.time()
            info = {
                "queues": list(self.config.queues),
                "concurrency": self.config.concurrency,
                "running": len(records),
                "at": now,
                "version": VERSION,
                "hosted": self.config.tenant_id is not None,
            }
            pipe.set(
                self._heartbeat_key(),
                json.dumps(info),
                ex=math.ceil(self.config.heartbeat_seconds * 3),
            )
            if self.config.tenant_id is not None:
                pipe.zadd(keys.tenant_workers(self.config.tenant_id), {self.name: now})
            replies = await pipe.execute(raise_on_error=False)
        # An unreachable Redis fails every command; say so (an outage) rather than
        # pretend a heartbeat went out. A lone XCLAIM error (NOGROUP after data loss) is
        # not one.
        if replies and isinstance(replies[-1], Exception):
            raise replies[-1]
        for index, record in enumerate(records):
            if replies[index * 3 + 2] == 1:
                self._cancel((record.message.task_run_id, record.message.attempt))
        metrics.WORKER_HEARTBEATS.inc()

    def _heartbeat_key(self) -> str:
        tenant = self.config.tenant_id
        if tenant is None:
            return keys.worker_heartbeat(self.name)
        return keys.tenant_worker_heartbeat(tenant, self.name)

    async def _claim_loop(self) -> None:
        guard = Guard("worker.claim")
        while not self._closing.is_set():
            await asyncio.sleep(self.config.visibility_timeout_seconds / 2)
            await guard.run(self.claim_abandoned())

    async def claim_abandoned(self) -> int:
        """Take entries a dead worker left pending; report their attempts as lost."""
        claimed = 0
        idle_ms = int(self.config.visibility_timeout_seconds * 1000)
        for stream in await self._streams():
            try:
                reply = await self.redis.xautoclaim(
                    stream, keys.WORKERS_GROUP, self.name, idle_ms, "0-0", count=100
                )
            except ResponseError as error:
                self._on_nogroup(error)
                continue
            for entry_id, fields in reply[1]:
                if fields is None:
                    continue
                try:
                    message = TaskMessage.from_json(fields[TASK_FIELD])
                except (KeyError, ValueError, TypeError):
                    await self._ack(stream, entry_id)
                    continue
                key = (message.task_run_id, message.attempt)
                if key in self.running or key in self.reporting:
                    continue  # ours, still running or still reporting
                lost = ExecutionResult.failed("the worker running it stopped", reason="lost")
                await self._publish(message, "finished", result=_result_dict(lost))
                await self._ack(stream, entry_id)
                claimed += 1
                metrics.WORKER_ABANDONED_CLAIMED.inc()
                log.warning(
                    "worker.claimed_abandoned",
                    task_run_id=message.task_run_id,
                    attempt=message.attempt,
                )
        return claimed

    async def _cancel_listener(self) -> None:
        """Listen for cancellations; subscribe again after an outage (pub/sub forgets)."""
        guard = Guard("worker.cancel_listener")
        while not self._closing.is_set():
            await guard.run(self._listen_for_cancels())

    def _cancel(self, key: tuple[str, int]) -> None:
        """Stop the attempt ``key`` (task run id, attempt) if it runs here."""
        record = self.running.get(key)
        # Heard once is enough: a second cancel would cut short the kill's grace period.
        if record is not None and record.task is not None and not record.cancelled_by_user:
            record.cancelled_by_user = True
            if record.begun:
                record.task.cancel()

    async def _listen_for_cancels(self) -> None:
        pubsub = self.redis.pubsub()
        tenant = self.config.tenant_id
        channel = keys.cancel_channel() if tenant is None else keys.tenant_cancel_channel(tenant)
        await pubsub.subscribe(channel)
        try:
            async for item in pubsub.listen():
                if item.get("type") != "message":
                    continue
                try:
                    data = json.loads(item["data"])
                    key = (str(data["task_run_id"]), int(data["attempt"]))
                except (ValueError, KeyError, TypeError):
                    continue
                self._cancel(key)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()


_Submission = tuple[list[tuple[Any, ...]], "asyncio.Future[list[Any]]", bool]


class _Pipeliner:
    """Sends the Redis commands submitted during one event-loop tick in one pipeline.

    Each submission is a list of commands (``("xadd", stream, fields)``...) kept together
    and in order; its future gets their replies, or the first error among them (or the
    connection's), so each caller retries exactly as it would have alone.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._queued: list[_Submission] = []
        self._flushes: set[asyncio.Task[None]] = set()

    def submit(
        self, commands: list[tuple[Any, ...]], *, raise_on_error: bool = True
    ) -> asyncio.Future[list[Any]]:
        """Queue ``commands`` for this tick's pipeline. With ``raise_on_error=False`` the
        future gets every reply, errors included (a connection failure still raises)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        # A caller cancelled meanwhile never reads the outcome: do not log it as lost.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        if not self._queued:
            loop.call_soon(self._flush_tick)
        self._queued.append((commands, future, raise_on_error))
        return future

    async def send(
        self, commands: list[tuple[Any, ...]], *, raise_on_error: bool = True
    ) -> list[Any]:
        return await self.submit(commands, raise_on_error=raise_on_error)

    def _flush_tick(self) -> None:
        batch, self._queued = self._queued, []
        if batch:
            flush = asyncio.create_task(self._flush(batch))
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[_Submission]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for commands, _, _ in batch:
                    for name, *args in commands:
                        getattr(pipe, name)(*args)
                replies = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as error:
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException:
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(RedisError("the pipeline was interrupted"))
            raise
        offset = 0
        for commands, future, raise_on_error in batch:
            mine = replies[offset : offset + len(commands)]
            offset += len(commands)
            failure = (
                next((r for r in mine if isinstance(r, Exception)), None)
                if raise_on_error
                else None
            )
            if future.done():
                continue
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(mine)


async def _stop_helpers(helpers: list[asyncio.Task[None]]) -> None:
    """Cancel the helper loops and wait until every one has ended.

    A redis-py pipeline can swallow a cancellation that arrives while it reads its reply
    (the loop then goes on to its next sleep), so a helper still running after a second is
    cancelled again rather than awaited forever.
    """
    for helper in helpers:
        helper.cancel()
    pending = set(helpers)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=1.0)
        for helper in pending:
            helper.cancel()
    for helper in helpers:
        if not helper.cancelled() and (error := helper.exception()) is not None:
            log.warning("worker.helper_failed", error=repr(error))


class _LogBuffer:
    """Collects an attempt's log lines and ships them as batched ``log`` events."""

    def __init__(self, worker: Worker, message: TaskMessage) -> None:
        self.worker = worker
        self.message = message
        self.lines: list[dict[str, Any]] = []
        self.seq = 0
        self.last_flush = time.monotonic()
        # Started with the first line: an attempt that prints nothing costs no extra task.
        self._flusher: asyncio.Task[None] | None = None

    def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()

    async def write(self, line: LogLine) -> None:
        if self._flusher is None:
            self._flusher = asyncio.create_task(self.flush_periodically())
        self.seq += 1
        self.lines.append(
            {"seq": self.seq, "stream": line.stream, "line": line.line, "ts": time.time()}
        )
        if len(self.lines) > LOG_BUFFER_MAX_LINES:  # a long outage: keep the newest
            del self.lines[: len(self.lines) - LOG_BUFFER_MAX_LINES]
        if (
            len(self.lines) >= LOG_FLUSH_LINES
            or time.monotonic() - self.last_flush > LOG_FLUSH_SECONDS
        ):
            # Kept for the next flush on failure: a task must not fail because Redis is away.
            with contextlib.suppress(RedisError, OSError):
                await self.flush()

    async def flush_periodically(self) -> None:
        """Ship lines at least every LOG_FLUSH_SECONDS, so logs are readable while a task
        that prints rarely is still running."""
        while True:
            await asyncio.sleep(LOG_FLUSH_SECONDS)
            try:
                await self.flush()
            except (RedisError, OSError) as error:
                log.warning("worker.log_flush_failed", error=str(error))

    async def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.lines:
            return
        lines, self.lines = self.lines, []
        try:
            await self.worker._publish(self.message, "log", lines=lines)
        except BaseException:
            self.lines[:0] = lines  # keep them for the next flush (Redis may be back)
            raise


def _result_dict(result: ExecutionResult) -> dict[str, Any]:
    return {
        "status": result.status,
        "output": result.output,
        "error": result.error,
        "reason": result.reason,
        "exit_code": result.exit_code,
    }
