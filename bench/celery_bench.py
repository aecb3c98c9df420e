"""The Celery side: real ``celery worker`` processes on a Redis broker (its own DB number).

Tasks are sent with ``apply_async`` from this process; each task records that it ran and
when it started (``bench.celery_app``). Celery keeps no per-tenant queues: both "tenants"
of the fairness scenario share the one queue, first in, first out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from redis.asyncio import Redis

from bench import celery_app
from bench.common import BIN, BenchConfig, BenchError, JsonDict, latency_summary, wait_until
from bench.cpu import CpuMeter, tree
from bench.procs import ProcessSet
from bench.services import FLUSHED, Services, flush_redis, redis_intact, redis_pid

log = logging.getLogger("bench.celery")

WARMUP_TASKS = 20


class CeleryCluster:
    def __init__(self, bench: CeleryBench, procs: ProcessSet) -> None:
        self.bench = bench
        self.procs = procs
        self.redis: Redis = Redis.from_url(bench.url)

    async def aclose(self) -> None:
        await self.redis.aclose()

    def start_workers(self) -> None:
        cfg = self.bench.cfg
        for i in range(cfg.workers):
            argv = [str(BIN / "celery"), "-A", "bench.celery_app", "worker",
                    "-Q", celery_app.QUEUE, "-P", cfg.celery_pool, "-n", f"w{i + 1}@bench",
                    "--without-gossip", "--without-mingle", "--without-heartbeat",
                    "-l", "WARNING"]
            if cfg.celery_pool != "solo":
                argv += ["-c", str(cfg.concurrency)]
            self.procs.start(f"celery-worker-{i + 1}", argv)

    async def cpu_meter(self) -> CpuMeter:
        procs = self.procs
        redis = await redis_pid(self.bench.url)
        return CpuMeter({
            "workers": lambda: [p for c in procs.by_name("celery-worker-") for p in tree(c.pid)],
            "redis": lambda: [redis] if redis else [],
        })

    # -- sending (blocking: run in a thread) -------------------------------------------
    @staticmethod
    def send(ids: list[str]) -> None:
        with celery_app.app.producer_or_acquire() as producer:
            for task_id in ids:
                celery_app.noop.apply_async(args=(task_id,), producer=producer)

    @staticmethod
    def send_paced(ids: list[str], rate: float) -> tuple[dict[str, float], dict[str, float]]:
        """Send at ``rate``/s (open loop). Per task id: the epoch second it was due, and
        the one ``apply_async`` was called (later only if the client fell behind)."""
        due: dict[str, float] = {}
        sent: dict[str, float] = {}
        with celery_app.app.producer_or_acquire() as producer:
            began, began_wall = time.perf_counter(), time.time()
            for i, task_id in enumerate(ids):
                delay = began + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                due[task_id] = began_wall + i / rate
                sent[task_id] = time.time()
                celery_app.noop.apply_async(args=(task_id,), producer=producer)
        return due, sent

    # -- observing ---------------------------------------------------------------------
    async def count(self) -> int:
        return int(await self.redis.hlen(celery_app.COUNTS))

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
        raw = await self.redis.hgetall(celery_app.STARTS)
        return {_text(k): float(v) for k, v in raw.items()}

    async def counts(self) -> dict[str, int]:
        raw = await self.redis.hgetall(celery_app.COUNTS)
        return {_text(k): int(v) for k, v in raw.items()}

    async def reset_records(self) -> None:
        await self.redis.delete(celery_app.COUNTS, celery_app.STARTS)

    async def warm(self) -> None:
        await asyncio.to_thread(self.send, [f"warm-{i}" for i in range(WARMUP_TASKS)])
        await self.wait_count(WARMUP_TASKS, within=90, what="celery warm-up")
        await self.reset_records()


class CeleryBench:
    def __init__(self, cfg: BenchConfig, services: Services, log_dir: Path) -> None:
        self.cfg = cfg
        self.url = services.celery_redis_url
        self.log_dir = log_dir
        celery_app.app.conf.broker_url = self.url
        celery_app.app.conf.result_backend = self.url  # chords only (see bench.celery_app)
        celery_app.BROKER_URL = self.url

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        return {**base, "BATON_BENCH_CELERY_URL": self.url}

    @contextlib.asynccontextmanager
    async def cluster(self, name: str, *, workers: bool = True) -> AsyncIterator[CeleryCluster]:
        await flush_redis(self.url)
        out = self.log_dir / name
        out.mkdir(parents=True, exist_ok=True)
        procs = ProcessSet(out, self.env())
        cluster = CeleryCluster(self, procs)
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

    def _pool_note(self) -> str:
        pool = self.cfg.celery_pool
        per = "1" if pool == "solo" else str(self.cfg.concurrency)
        return f"{self.cfg.workers} celery worker --pool={pool} (concurrency {per} each)"

    async def throughput(self) -> JsonDict:
        total = self.cfg.throughput_tasks
        async with self.cluster("celery-throughput") as cluster:
            ids = [f"t-{i}" for i in range(total)]
            meter = await cluster.cpu_meter()
            meter.start()
            began = time.time()
            await asyncio.to_thread(cluster.send, ids)
            enqueued = time.time() - began
            await cluster.wait_count(total, within=120 + total / 25, what="celery throughput")
            observed = time.time() - began
            cpu = meter.stop()
            await asyncio.sleep(1.0)  # let a duplicate execution, if any, show up
            counts = await cluster.counts()
            starts = await cluster.starts()
            queue_left = int(await cluster.redis.llen(celery_app.QUEUE))
        elapsed = max(starts.values()) - began
        once = [k for k, v in counts.items() if v == 1]
        checks = {"distinct_tasks": len(counts), "ran_once": len(once),
                  "ran_more_than_once": sum(1 for v in counts.values() if v > 1),
                  "unknown_ids": len(set(counts) - set(ids)), "left_in_queue": queue_left}
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
            "workers": self.cfg.workers,
            "concurrency": self.cfg.concurrency,
            "pool": self.cfg.celery_pool,
            "cpu_seconds": cpu,
            "setup": self._pool_note() + "; apply_async from one client thread",
        }

    async def latency(self) -> JsonDict:
        total, rate = self.cfg.latency_tasks, self.cfg.latency_rate
        async with self.cluster("celery-latency") as cluster:
            await asyncio.sleep(2)  # idle, warm
            ids = [f"l-{i}" for i in range(total)]
            meter = await cluster.cpu_meter()
            meter.start()
            began = time.perf_counter()
            due, sent = await asyncio.to_thread(cluster.send_paced, ids, rate)
            sending = time.perf_counter() - began
            await cluster.wait_count(total, within=120 + total / 20, what="celery latency")
            cpu = meter.stop()
            starts = await cluster.starts()
        values = [(starts[i] - sent[i]) * 1000 for i in ids if i in starts]
        from_due = [(starts[i] - due[i]) * 1000 for i in ids if i in starts]
        return {
            "tasks": total,
            "target_rate_per_s": rate,
            "achieved_rate_per_s": round(total / sending, 1),
            **latency_summary(values),
            **latency_summary(from_due, "due_to_start_"),
            "measured": "apply_async() call -> task body starts",
            "workers": self.cfg.workers,
            "concurrency": self.cfg.concurrency,
            "pool": self.cfg.celery_pool,
            "cpu_seconds": cpu,
        }

    async def fairness(self) -> JsonDict:
        backlog, probes = self.cfg.fairness_backlog, self.cfg.fairness_probe_tasks
        async with self.cluster("celery-fairness", workers=False) as cluster:
            began = time.perf_counter()
            await asyncio.to_thread(cluster.send, [f"a-{i}" for i in range(backlog)])
            enqueue_seconds = time.perf_counter() - began
            cluster.start_workers()  # only now: tenant A's whole backlog is queued
            per_worker = 1 if self.cfg.celery_pool == "solo" else self.cfg.concurrency
            await cluster.wait_count(min(self.cfg.workers * per_worker, backlog), within=90,
                                     what="tenant A's first tasks")
            waiting = int(await cluster.redis.llen(celery_app.QUEUE))
            b_ids = [f"b-{i}" for i in range(probes)]
            meter = await cluster.cpu_meter()
            meter.start()
            probe_began = time.time()
            _, sent = await asyncio.to_thread(
                cluster.send_paced, b_ids, probes / self.cfg.fairness_probe_seconds
            )

            async def b_started() -> bool:
                cluster.procs.check_alive()
                found = await cluster.redis.hmget(celery_app.STARTS, b_ids)
                return all(v is not None for v in found)

            timed_out = False
            try:
                await wait_until(b_started, within=self.cfg.fairness_wait_seconds,
                                 interval=0.5, what="tenant B's tasks to start")
            except BenchError:
                timed_out = True
            window_end = time.time()
            cpu = meter.stop()
            starts = await cluster.starts()
        latencies = [(starts[i] - sent[i]) * 1000 for i in b_ids if i in starts]
        a_during = _count(starts, lambda k, v: k.startswith("a-") and probe_began <= v < window_end)
        return {
            "a_backlog": backlog,
            "a_waiting_at_b_start": waiting,
            "a_enqueue_seconds": round(enqueue_seconds, 1),
            "b_tasks": probes,
            "b_started": len(latencies),
            "b_timed_out": timed_out,
            **latency_summary(latencies, "b_"),
            "a_tasks_per_s_meanwhile": round(a_during / max(window_end - probe_began, 1e-6), 1),
            "measured": "tenant B: apply_async() -> task starts; one shared FIFO queue",
            "workers": self.cfg.workers,
            "concurrency": self.cfg.concurrency,
            "pool": self.cfg.celery_pool,
            "cpu_seconds": cpu,
        }

    # The DAG scenarios live in bench.celery_dag (imported late: it imports this).
    async def chain40(self) -> JsonDict:
        from bench.celery_dag import chain40

        return await chain40(self)

    async def fanout500(self) -> JsonDict:
        from bench.celery_dag import fanout500

        return await fanout500(self)

    async def dag1000(self) -> JsonDict:
        from bench.celery_dag import dag1000

        return await dag1000(self)

    # Celery beat against Baton's cron scheduler (bench.celery_sched). There is no Celery
    # counterpart of scheduler_failover: beat is meant to run as one instance.
    async def schedules10k(self) -> JsonDict:
        from bench.celery_sched import schedules10k

        return await schedules10k(self)


def _count(values: dict[str, float], keep: Callable[[str, float], bool]) -> int:
    return sum(1 for k, v in values.items() if keep(k, v))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
