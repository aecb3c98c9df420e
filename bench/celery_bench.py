"""The Celery side: real ``celery worker`` processes on a Redis broker (its own DB number).

Tasks are sent with ``apply_async`` from this process; each task records that it ran and
when it started (``bench.celery_app``). The dispatch scenarios are shared with Dramatiq
(``bench.peer_bench``); the DAG and beat scenarios are Celery's alone.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path

from bench import celery_app
from bench.common import BIN, BenchConfig, JsonDict
from bench.peer_bench import PeerBench, PeerCluster
from bench.services import Services


class CeleryCluster(PeerCluster):
    worker_prefix = "celery-worker-"

    def start_workers(self) -> None:
        cfg = self.bench.cfg
        for i in range(cfg.workers):
            argv = [
                str(BIN / "celery"),
                "-A",
                "bench.celery_app",
                "worker",
                "-Q",
                celery_app.QUEUE,
                "-P",
                cfg.celery_pool,
                "-n",
                f"w{i + 1}@bench",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "WARNING",
            ]
            if cfg.celery_pool != "solo":
                argv += ["-c", str(cfg.concurrency)]
            self.procs.start(f"celery-worker-{i + 1}", argv)

    def send(self, ids: list[str]) -> None:
        with celery_app.app.producer_or_acquire() as producer:
            for task_id in ids:
                celery_app.noop.apply_async(args=(task_id,), producer=producer)

    def send_paced(self, ids: list[str], rate: float) -> tuple[dict[str, float], dict[str, float]]:
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

    def send_delayed(self, ids: list[str], rate: float, delay: float) -> dict[str, float]:
        due: dict[str, float] = {}
        with celery_app.app.producer_or_acquire() as producer:
            began = time.perf_counter()
            for i, task_id in enumerate(ids):
                pause = began + i / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                eta = time.time() + delay
                due[task_id] = eta
                celery_app.noop.apply_async(
                    args=(task_id,),
                    producer=producer,
                    eta=datetime.datetime.fromtimestamp(eta, datetime.UTC),
                )
        return due

    async def waiting(self) -> int:
        return int(await self.redis.llen(celery_app.QUEUE))


class CeleryBench(PeerBench):
    system = "celery"
    cluster_class = CeleryCluster
    url_env = "BATON_BENCH_CELERY_URL"

    def __init__(self, cfg: BenchConfig, services: Services, log_dir: Path) -> None:
        super().__init__(cfg, services.celery_redis_url, log_dir)
        celery_app.app.conf.broker_url = self.url
        celery_app.app.conf.result_backend = self.url  # chords only (see bench.celery_app)
        celery_app.BROKER_URL = self.url

    def concurrency_per_worker(self) -> int:
        return 1 if self.cfg.celery_pool == "solo" else self.cfg.concurrency

    def _pool_note(self) -> str:
        pool = self.cfg.celery_pool
        return (
            f"{self.cfg.workers} celery worker --pool={pool} "
            f"(concurrency {self.concurrency_per_worker()} each)"
        )

    def setup_note(self) -> str:
        return self._pool_note() + "; apply_async from one client thread"

    def _common(self) -> JsonDict:
        return {**super()._common(), "pool": self.cfg.celery_pool}

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
