"""``make bench``: every scenario for Baton, Celery and Dramatiq, one JSON line each on stdout.

Run as ``python -m bench.run`` from the repository root. Knobs (environment):

- ``BATON_BENCH_SCALE`` (default 1): multiplies every task count (0.1 for a quick run);
- ``BATON_BENCH_DATABASE_URL`` / ``BATON_BENCH_REDIS_URL``: servers to use (else embedded);
- ``BATON_BENCH_REDIS_DB`` / ``BATON_BENCH_CELERY_REDIS_DB`` / ``BATON_BENCH_DRAMATIQ_REDIS_DB``:
  Redis DB numbers (14 / 15 / 13);
- ``BATON_BENCH_SCENARIOS`` (``throughput,latency,fairness,trigger_rate,chain40,fanout500,
  dag1000,schedules10k,scheduler_failover,schedules100k,soak``; a system without a scenario
  skips it: Celery has no scheduler_failover, schedules100k nor trigger_rate, Dramatiq only
  the dispatch scenarios),
  ``BATON_BENCH_SYSTEMS`` (``baton,celery,dramatiq``); ``BATON_BENCH_WORKERS`` (2),
  ``BATON_BENCH_CONCURRENCY`` (16);
- ``BATON_BENCH_CELERY_POOL`` (solo: fastest here), ``BATON_BENCH_THROUGHPUT_QUOTA`` (1000);
- ``BATON_BENCH_DRAMATIQ_THREADS`` (8), ``BATON_BENCH_DRAMATIQ_WORKER_TIMEOUT`` (ms; Dramatiq's
  default 1000); ``BATON_BENCH_LATENCY_DELAY`` (1 s: how far ahead a delayed run is due);
- trigger_rate (bench.trigger_rate): ``BATON_BENCH_TRIGGER_CLIENTS`` (64),
  ``BATON_BENCH_TRIGGER_STEP_SECONDS`` (10 x scale, at least 3), ``BATON_BENCH_TRIGGER_P99_MS``
  (50), ``BATON_BENCH_TRIGGER_ENGINE`` (0: the API alone; 1: engine and workers beside it);
- DAG scenarios: ``BATON_BENCH_CHAIN_RUNS`` (5), ``BATON_BENCH_FANOUT_RUNS`` (3),
  ``BATON_BENCH_DAG_SEED`` (1000), ``BATON_BENCH_DAG_QUOTA`` (1000),
  ``BATON_BENCH_DAG_TIMEOUT`` (300 s per run);
- ``BATON_BENCH_PROFILE=1``: py-spy the Baton engine, a worker and the API (throughput,
  latency, fairness and the DAG scenarios; the API in trigger_rate), the scheduler and
  celery beat (schedules10k);
- ``BATON_BENCH_UPDATE_DOCS=0``: leave docs/benchmarks.md alone;
- scheduler scenarios (bench.baton_sched, bench.celery_sched): ``BATON_BENCH_SCHEDULE_MINUTES``
  (2; 1 at scale <= 0.5), ``BATON_BENCH_SCHEDULE_LEAD`` (estimated), ``BATON_BENCH_SEED_SECONDS``
  (0.012 s per schedule, for that estimate), ``BATON_BENCH_SCHEDULE_WAIT`` (600 s),
  ``BATON_BENCH_BEAT_WAIT`` (90 s); schedules100k: ``BATON_BENCH_HOURLY_LEAD`` (estimated),
  ``BATON_BENCH_HOURLY_SEED_SECONDS`` (0.006 s per schedule, for that estimate when
  schedules10k did not run before it), ``BATON_BENCH_IDLE_SECONDS`` (60: the idle window
  after the burst); the replicas take ``BATON_SCHEDULER_LEASE_SECONDS``,
  ``BATON_SCHEDULER_POLL_SECONDS`` and ``BATON_SCHEDULER_AHEAD_SECONDS`` from the
  environment;
- soak (bench.soak): ``BATON_BENCH_SOAK_MINUTES`` (5 x scale, at least 1),
  ``BATON_BENCH_SOAK_RATE`` (20 triggers/s), ``BATON_BENCH_SOAK_SAMPLE_SECONDS`` (10),
  ``BATON_BENCH_SOAK_RETENTION_SECONDS`` (60);
- ``BATON_BENCH_TIMEOUT`` (3600 s): the whole run is cancelled after this long.

Logs of every process go to a fresh ``/tmp/baton-bench-*`` directory (named on stderr).
Exit status 1 if any scenario failed (its JSON line then carries ``error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.common import BenchConfig, JsonDict, configure_logging
from bench.machine import machine_info
from bench.report import write_report
from bench.services import bench_database, server_versions, services_from_env

log = logging.getLogger("bench")


def emit(line: JsonDict) -> None:
    """The one stdout output: a JSON result line."""
    print(json.dumps(line), flush=True)  # noqa: T201


async def run(cfg: BenchConfig, log_dir: Path) -> int:
    services = services_from_env()
    versions = await server_versions(services)
    machine = machine_info(versions, services.source)
    log.info(
        "scale %g, scenarios %s, systems %s; logs in %s",
        cfg.scale,
        ",".join(cfg.scenarios),
        ",".join(cfg.systems),
        log_dir,
    )
    results: list[JsonDict] = []
    failed = 0
    async with contextlib.AsyncExitStack() as stack:
        database = await stack.enter_async_context(bench_database(services))
        runners: dict[str, object] = {}
        if "baton" in cfg.systems:
            from bench.baton_bench import baton_bench

            runners["baton"] = await stack.enter_async_context(
                baton_bench(cfg, services, database, log_dir)
            )
        if "celery" in cfg.systems:
            from bench.celery_bench import CeleryBench

            runners["celery"] = CeleryBench(cfg, services, log_dir)
        if "dramatiq" in cfg.systems:
            from bench.dramatiq_bench import DramatiqBench

            runners["dramatiq"] = DramatiqBench(cfg, services, log_dir)
        for scenario in cfg.scenarios:
            for system in cfg.systems:
                if not hasattr(runners[system], scenario):
                    log.info(
                        "== %s / %s: no such scenario for %s (see docs/benchmarks.md)",
                        scenario,
                        system,
                        system,
                    )
                    continue
                log.info("== %s / %s", scenario, system)
                began = time.monotonic()
                try:
                    metrics: JsonDict = await getattr(runners[system], scenario)()
                except Exception as error:
                    log.exception("%s / %s failed", scenario, system)
                    metrics = {"error": f"{type(error).__name__}: {error}"[:4000]}
                    failed += 1
                line = {
                    "scenario": scenario,
                    "system": system,
                    "scale": cfg.scale,
                    **metrics,
                    "wall_seconds": round(time.monotonic() - began, 1),
                    "machine": machine,
                }
                emit(line)
                results.append(line)
    if cfg.update_docs and results:
        write_report(cfg.docs_path, results, machine, cfg)
        log.info("results table written to %s", cfg.docs_path)
    return 1 if failed else 0


async def main_async(cfg: BenchConfig, log_dir: Path) -> int:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await asyncio.wait_for(run(cfg, log_dir), timeout=cfg.timeout_seconds)
    except TimeoutError:
        log.error("the benchmark did not finish in %.0f s; stopped", cfg.timeout_seconds)
        return 2


def main() -> int:
    configure_logging()
    cfg = BenchConfig.from_env()
    log_dir = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    started = time.monotonic()
    try:
        code = asyncio.run(main_async(cfg, log_dir))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log.error("interrupted")
        code = 130
    log.info("done in %.0f s (exit %d); logs in %s", time.monotonic() - started, code, log_dir)
    return code


if __name__ == "__main__":
    sys.exit(main())
