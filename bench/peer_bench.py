"""What the Python peers (Celery, Dramatiq) share: the dispatch scenarios over a Redis broker.

Each peer runs real worker processes on a Redis broker (a database number of its own); the
benchmark sends from this process. The peer's one task is a no-op that, in one pipelined
Redis round trip, counts its own execution (``HINCRBY`` by task id: the proof of exactly
once) and records when it started, so both peers are measured the same way. Neither has
tenants: both "tenants" of the fairness scenario share the one queue, first in, first out.

A peer is a :class:`PeerBench` (the scenarios) with a :class:`PeerCluster` subclass that
knows how to start its workers and send its messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import ClassVar

from redis.asyncio import Redis

from bench.common import (
    BenchConfig,
    BenchError,
    JsonDict,
    cpu_per_task,
    latency_summary,
    reached,
    wait_until,
)
from bench.cpu import CpuMeter, tree
from bench.procs import ProcessSet
from bench.services import FLUSHED, flush_redis, redis_intact, redis_pid

log = logging.getLogger("bench.peer")

WARMUP_TASKS = 20
COUNTS = "bench:counts"  # task id -> times it ran (the task's own record)
STARTS = "bench:started"  # task id -> epoch seconds when it started
# What does the work of a peer: its workers and the broker (not the sending client).
PEER_SYSTEM = ("workers", "redis")


class PeerCluster:
    """One peer's worker processes and a Redis client on its broker database."""

    worker_prefix: ClassVar[str] = "worker-"

    def __init__(self, bench: PeerBench, procs: ProcessSet) -> None:
        self.bench = bench
        self.procs = procs
        self.redis: Redis = Redis.from_url(bench.url)

    async def aclose(self) -> None:
        await self.redis.aclose()

    # -- what a peer implements --------------------------------------------------------
    def start_workers(self) -> None:
        raise NotImplementedError

    def send(self, ids: list[str]) -> None:
        """Send one task per id as fast as the client can (blocking: run in a thread)."""
        raise NotImplementedError

    def send_paced(self, ids: list[str], rate: float) -> tuple[dict[str, float], dict[str, float]]:
        """Send at ``rate``/s (open loop). Per task id: the epoch second it was due, and
        the one the send call began (later only if the client fell behind)."""
        raise NotImplementedError

    def send_delayed(self, ids: list[str], rate: float, delay: float) -> dict[str, float]:
        """Send at ``rate``/s, each task to start ``delay`` s after it is sent; per task id
        the epoch second it is due to start (the instant the peer was asked for)."""
        raise NotImplementedError

    async def waiting(self) -> int:
        """Messages waiting in the broker's queue."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------
    async def cpu_meter(self) -> CpuMeter:
        procs, prefix = self.procs, self.worker_prefix
        redis = await redis_pid(self.bench.url)
        return CpuMeter(
            {
                "workers": lambda: [p for c in procs.by_name(prefix) for p in tree(c.pid)],
                "redis": lambda: [redis] if redis else [],
            }
        )

    async def count(self) -> int:
        return int(await self.redis.hlen(COUNTS))

    async def wait_count(self, total: int, *, within: float, what: str) -> None:
        next_log = time.monotonic() + 10

        async def done() -> bool:
            nonlocal next_log
            self.procs.check_alive()
            ran = await self.count()
            if time.monotonic() > next_log:
                next_log = time.monotonic() + 10
                log.info("%s: %d/%d ran", what, ran, total)
            return ran >= total

        await wait_until(done, within=within, interval=0.25, what=what)

    async def starts(self) -> dict[str, float]:
        raw = await self.redis.hgetall(STARTS)
        return {_text(k): float(v) for k, v in raw.items()}

    async def counts(self) -> dict[str, int]:
        raw = await self.redis.hgetall(COUNTS)
        return {_text(k): int(v) for k, v in raw.items()}

    async def reset_records(self) -> None:
        await self.redis.delete(COUNTS, STARTS)

    async def warm(self) -> None:
        await asyncio.to_thread(self.send, [f"warm-{i}" for i in range(WARMUP_TASKS)])
        await self.wait_count(WARMUP_TASKS, within=90, what=f"{self.bench.system} warm-up")
        await self.reset_records()


class PeerBench:
    """The dispatch scenarios (throughput, latency, fairness) for one peer."""

    system: ClassVar[str] = ""
    cluster_class: ClassVar[type[PeerCluster]] = PeerCluster
    url_env: ClassVar[str] = ""  # the environment variable the peer's app reads its URL from

    def __init__(self, cfg: BenchConfig, url: str, log_dir: Path) -> None:
        self.cfg = cfg
        self.url = url
        self.log_dir = log_dir

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        return {**base, self.url_env: self.url}

    def setup_note(self) -> str:
        raise NotImplementedError

    def concurrency_per_worker(self) -> int:
        raise NotImplementedError

    def _common(self) -> JsonDict:
        return {
            "workers": self.cfg.workers,
            "concurrency": self.concurrency_per_worker(),
            "setup": self.setup_note(),
        }

    @contextlib.asynccontextmanager
    async def cluster(self, name: str, *, workers: bool = True) -> AsyncIterator[PeerCluster]:
        await flush_redis(self.url)
        out = self.log_dir / name
        out.mkdir(parents=True, exist_ok=True)
        procs = ProcessSet(out, self.env())
        cluster = self.cluster_class(self, procs)
        try:
            if workers:
                cluster.start_workers()
                await cluster.warm()
            yield cluster
            if not await redis_intact(self.url):
                raise BenchError(FLUSHED.format(url=self.url))
        except BaseException:
            procs.dump_tails()
            raise
        finally:
            await cluster.aclose()
            await asyncio.to_thread(procs.stop_all)

    async def throughput(self) -> JsonDict:
        total = self.cfg.throughput_tasks
        async with self.cluster(f"{self.system}-throughput") as cluster:
            ids = [f"t-{i}" for i in range(total)]
            meter = await cluster.cpu_meter()
            meter.start()
            began = time.time()
            await asyncio.to_thread(cluster.send, ids)
            enqueued = time.time() - began
            await cluster.wait_count(
                total, within=120 + total / 25, what=f"{self.system} throughput"
            )
            observed = time.time() - began
            cpu = meter.stop()
            await asyncio.sleep(1.0)  # let a duplicate execution, if any, show up
            counts = await cluster.counts()
            starts = await cluster.starts()
            queue_left = await cluster.waiting()
        elapsed = max(starts.values()) - began
        once = [k for k, v in counts.items() if v == 1]
        checks = {
            "distinct_tasks": len(counts),
            "ran_once": len(once),
            "ran_more_than_once": sum(1 for v in counts.values() if v > 1),
            "unknown_ids": len(set(counts) - set(ids)),
            "left_in_queue": queue_left,
        }
        ok = len(counts) == total and len(once) == total and checks["unknown_ids"] == 0
        return {
            "tasks": total,
            "tasks_per_s": round(total / elapsed, 1),
            "seconds": round(elapsed, 2),
            "enqueue_seconds": round(enqueued, 2),
            "enqueue_tasks_per_s": round(total / enqueued, 1),
            "drain_observed_seconds": round(observed, 2),
            "exactly_once": ok,
            "checks": checks,
            **self._common(),
            "cpu_seconds": cpu,
            **cpu_per_task(cpu, total, PEER_SYSTEM),
        }

    async def latency(self) -> JsonDict:
        total, rate = self.cfg.latency_tasks, self.cfg.latency_rate
        async with self.cluster(f"{self.system}-latency") as cluster:
            await asyncio.sleep(2)  # idle, warm
            ids = [f"l-{i}" for i in range(total)]
            meter = await cluster.cpu_meter()
            meter.start()
            began = time.perf_counter()
            due, sent = await asyncio.to_thread(cluster.send_paced, ids, rate)
            sending = time.perf_counter() - began
            await cluster.wait_count(total, within=120 + total / 20, what=f"{self.system} latency")
            cpu = meter.stop()
            starts = await cluster.starts()
            delayed = await self._delayed(cluster)
        values = [(starts[i] - sent[i]) * 1000 for i in ids if i in starts]
        from_due = [(starts[i] - due[i]) * 1000 for i in ids if i in starts]
        return {
            "tasks": total,
            "target_rate_per_s": rate,
            "achieved_rate_per_s": round(total / sending, 1),
            **latency_summary(values),
            **latency_summary(from_due, "due_to_start_"),
            **delayed,
            "measured": "send call -> task body starts",
            **self._common(),
            "cpu_seconds": cpu,
            **cpu_per_task(cpu, total, PEER_SYSTEM),
        }

    async def _delayed(self, cluster: PeerCluster) -> JsonDict:
        """The latency scenario's second phase: tasks sent ``latency_delay_seconds`` ahead
        of the instant they are due (Celery: ``eta``; Dramatiq: ``delay``), at the same
        rate; due -> start of each."""
        total = max(10, self.cfg.latency_tasks // 4)
        ids = [f"d-{i}" for i in range(total)]
        due = await asyncio.to_thread(
            cluster.send_delayed, ids, self.cfg.latency_rate, self.cfg.latency_delay_seconds
        )
        await cluster.wait_count(
            len(due) + self.cfg.latency_tasks,
            within=120 + total / 20,
            what=f"{self.system} delayed tasks",
        )
        starts = await cluster.starts()
        values = [(starts[i] - due[i]) * 1000 for i in ids if i in starts]
        return {
            "delayed_tasks": total,
            "delayed_by_s": self.cfg.latency_delay_seconds,
            **latency_summary(values, "scheduled_due_to_start_"),
        }

    async def fairness(self) -> JsonDict:
        backlog, probes = self.cfg.fairness_backlog, self.cfg.fairness_probe_tasks
        async with self.cluster(f"{self.system}-fairness", workers=False) as cluster:
            began = time.perf_counter()
            await asyncio.to_thread(cluster.send, [f"a-{i}" for i in range(backlog)])
            enqueue_seconds = time.perf_counter() - began
            cluster.start_workers()  # only now: tenant A's whole backlog is queued
            await cluster.wait_count(
                min(self.cfg.workers * self.concurrency_per_worker(), backlog),
                within=90,
                what="tenant A's first tasks",
            )
            waiting = await cluster.waiting()
            b_ids = [f"b-{i}" for i in range(probes)]
            meter = await cluster.cpu_meter()
            meter.start()
            probe_began = time.time()
            _, sent = await asyncio.to_thread(
                cluster.send_paced, b_ids, probes / self.cfg.fairness_probe_seconds
            )

            async def b_started() -> bool:
                cluster.procs.check_alive()
                found = await cluster.redis.hmget(STARTS, b_ids)
                return all(v is not None for v in found)

            timed_out = not await reached(
                b_started,
                within=self.cfg.fairness_wait_seconds,
                interval=0.5,
                what="tenant B's tasks to start",
            )
            window_end = time.time()
            cpu = meter.stop()
            starts = await cluster.starts()
        latencies = [(starts[i] - sent[i]) * 1000 for i in b_ids if i in starts]
        a_during = _count(starts, lambda k, v: k.startswith("a-") and probe_began <= v < window_end)
        ran = a_during + len(latencies)
        return {
            "a_backlog": backlog,
            "a_waiting_at_b_start": waiting,
            "a_enqueue_seconds": round(enqueue_seconds, 1),
            "b_tasks": probes,
            "b_started": len(latencies),
            "b_timed_out": timed_out,
            **latency_summary(latencies, "b_"),
            "a_tasks_per_s_meanwhile": round(a_during / max(window_end - probe_began, 1e-6), 1),
            "measured": "tenant B: send call -> task starts; one shared FIFO queue",
            **self._common(),
            "cpu_seconds": cpu,
            **cpu_per_task(cpu, ran, PEER_SYSTEM),
        }


def _count(values: dict[str, float], keep: Callable[[str, float], bool]) -> int:
    return sum(1 for k, v in values.items() if keep(k, v))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
