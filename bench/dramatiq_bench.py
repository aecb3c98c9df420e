"""The Dramatiq side: real ``dramatiq`` worker processes on a Redis broker (its own DB).

Messages are sent with ``actor.send`` from this process; each task records that it ran and
when it started (``bench.dramatiq_app``), like Celery's. Each of the ``BATON_BENCH_WORKERS``
worker processes is one ``dramatiq --processes 1 --threads N`` command (its supervisor
process and the one worker it forks are both measured as "workers"). Only the dispatch
scenarios: Dramatiq has pipelines and groups but no DAG of tasks, and no scheduler.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench.common import BIN, BenchConfig
from bench.peer_bench import PeerBench, PeerCluster
from bench.services import Services

URL_ENV = "BATON_BENCH_DRAMATIQ_URL"


def _app(url: str) -> Any:
    """``bench.dramatiq_app``, its broker bound to ``url`` (it reads the URL on import)."""
    os.environ[URL_ENV] = url
    from bench import dramatiq_app

    if url != dramatiq_app.BROKER_URL:
        raise RuntimeError(f"bench.dramatiq_app was imported for {dramatiq_app.BROKER_URL}")
    return dramatiq_app


class DramatiqCluster(PeerCluster):
    worker_prefix = "dramatiq-worker-"

    def start_workers(self) -> None:
        cfg = self.bench.cfg
        # An idle Dramatiq consumer polls Redis with a growing back-off, up to the worker
        # timeout (1 s by default, the environment variable ``dramatiq_worker_timeout``).
        timeout = os.environ.get("BATON_BENCH_DRAMATIQ_WORKER_TIMEOUT", "").strip()
        env = {"dramatiq_worker_timeout": timeout} if timeout else None
        for i in range(cfg.workers):
            self.procs.start(
                f"dramatiq-worker-{i + 1}",
                [
                    str(BIN / "dramatiq"),
                    "bench.dramatiq_app",
                    "--processes",
                    "1",
                    "--threads",
                    str(cfg.dramatiq_threads),
                ],
                env=env,
            )

    def send(self, ids: list[str]) -> None:
        noop = _app(self.bench.url).noop
        for task_id in ids:
            noop.send(task_id)

    def send_paced(self, ids: list[str], rate: float) -> tuple[dict[str, float], dict[str, float]]:
        noop = _app(self.bench.url).noop
        due: dict[str, float] = {}
        sent: dict[str, float] = {}
        began, began_wall = time.perf_counter(), time.time()
        for i, task_id in enumerate(ids):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            due[task_id] = began_wall + i / rate
            sent[task_id] = time.time()
            noop.send(task_id)
        return due, sent

    def send_delayed(self, ids: list[str], rate: float, delay: float) -> dict[str, float]:
        noop = _app(self.bench.url).noop
        due: dict[str, float] = {}
        began = time.perf_counter()
        for i, task_id in enumerate(ids):
            pause = began + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            message = noop.send_with_options(args=(task_id,), delay=round(delay * 1000))
            due[task_id] = message.options["eta"] / 1000  # the broker's own due instant
        return due

    async def waiting(self) -> int:
        return int(await self.redis.llen(f"dramatiq:{_app(self.bench.url).QUEUE}"))


class DramatiqBench(PeerBench):
    system = "dramatiq"
    cluster_class = DramatiqCluster
    url_env = URL_ENV

    def __init__(self, cfg: BenchConfig, services: Services, log_dir: Path) -> None:
        super().__init__(cfg, services.dramatiq_redis_url, log_dir)
        _app(self.url)

    def concurrency_per_worker(self) -> int:
        return self.cfg.dramatiq_threads

    def setup_note(self) -> str:
        return (
            f"{self.cfg.workers} dramatiq --processes 1 --threads "
            f"{self.cfg.dramatiq_threads} (Redis broker); actor.send from one client thread"
        )
