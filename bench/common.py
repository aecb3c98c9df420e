"""Settings, statistics and small helpers shared by every benchmark module.

Every knob is an environment variable (``BATON_BENCH_*``) so ``make bench`` needs no
arguments; :class:`BenchConfig` reads them once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
BIN = Path(sys.executable).parent  # the virtualenv's bin/: baton, celery, py-spy


SCENARIOS = (
    "throughput",
    "latency",
    "fairness",
    "trigger_rate",
    "chain40",
    "fanout500",
    "dag1000",
    "schedules10k",
    "scheduler_failover",
    "schedules100k",
    "soak",
)
SYSTEMS = ("baton", "celery", "dramatiq")
# The peers Baton's figures are compared with, in the order of the results table's columns.
PEERS = ("celery", "dramatiq")
# The cron-scheduler scenarios (their own results table in docs/benchmarks.md).
SCHEDULER_SCENARIOS = ("schedules10k", "scheduler_failover", "schedules100k")


class BenchError(RuntimeError):
    """A scenario could not produce a valid result (timeout, lost task, dead process)."""


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def _env_flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    return raw in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class BenchConfig:
    scale: float
    workers: int  # worker processes per system
    concurrency: int  # tasks at once per worker process (both systems)
    throughput_tasks: int
    throughput_quota: int  # BATON_TENANT_MAX_CONCURRENT_TASKS in the throughput scenario
    latency_tasks: int
    latency_rate: float  # tasks per second
    fairness_backlog: int  # tenant A's queued tasks
    fairness_probe_tasks: int  # tenant B's single triggers
    fairness_probe_seconds: float  # B's triggers are spread over this long
    fairness_wait_seconds: float  # how long B's tasks may take to start before we give up
    chain_length: int  # chain40: tasks in the sequential chain (not scaled)
    chain_runs: int  # chain40: measured runs (median, min, max)
    fanout_width: int  # fanout500: parallel tasks between the first task and the join
    fanout_runs: int  # fanout500: measured runs per variant
    dag_layers: int  # dag1000: layers of the layered DAG (not scaled)
    dag_width: int  # dag1000: tasks per layer
    dag_seed: int  # dag1000: seed of the random dependencies (same DAG every run)
    dag_quota: int  # BATON_TENANT_MAX_CONCURRENT_TASKS in the DAG scenarios
    dag_timeout: float  # seconds one DAG run may take before the scenario fails
    schedule_tenants: int  # schedules10k: tenants (500 at full size)
    schedules_per_tenant: int  # schedules10k: scheduled jobs per tenant (20, not scaled)
    schedule_lead_seconds: float  # schedules10k: seconds to the first instant (0: estimate)
    seed_seconds_per_schedule: float  # estimate of creating one scheduled job, for the lead
    schedule_wait_seconds: float  # schedules10k: how long after the last instant to wait
    beat_wait_seconds: float  # schedules10k, Celery beat: the same (it never ends by itself)
    failover_tenants: int  # scheduler_failover: tenants (20, not scaled)
    failover_per_tenant: int  # scheduler_failover: scheduled jobs per tenant (10)
    hourly_tenants: int  # schedules100k: tenants (2,000 at full size)
    hourly_per_tenant: int  # schedules100k: hourly scheduled jobs per tenant (50, not scaled)
    hourly_lead_seconds: float  # schedules100k: seconds to the burst (0: estimate)
    hourly_seed_seconds_per_schedule: float  # schedules100k: creation estimate, for the lead
    hourly_idle_seconds: float  # schedules100k: the idle window measured after the burst
    hourly_prepared: bool  # schedules100k: index every tenant at its wake, as a past burst would
    celery_pool: str  # prefork | threads | solo | gevent
    dramatiq_threads: int  # worker threads per Dramatiq process
    latency_delay_seconds: float  # latency: how far ahead a delayed run is due (due -> start)
    trigger_clients: int  # trigger_rate: concurrent HTTP clients (connections)
    trigger_step_seconds: float  # trigger_rate: length of one open-loop step
    trigger_p99_ms: float  # trigger_rate: the p99 a sustained rate must keep
    trigger_engine: bool  # trigger_rate: run the engine and workers beside the API
    batch_size: int  # runs per Baton batch trigger
    profile: bool  # py-spy the Baton engine, a worker and the API (see bench.run)
    scenarios: tuple[str, ...]
    systems: tuple[str, ...]
    update_docs: bool
    docs_path: Path
    timeout_seconds: float  # the whole run

    @classmethod
    def from_env(cls) -> BenchConfig:
        scale = _env_float("BATON_BENCH_SCALE", 1.0)
        if not 0 < scale <= 10:
            raise ValueError("BATON_BENCH_SCALE must be in (0, 10]")

        def scaled(n: int) -> int:
            return max(1, round(n * scale))

        scenarios = tuple(
            s.strip()
            for s in os.environ.get("BATON_BENCH_SCENARIOS", ",".join(SCENARIOS)).split(",")
            if s.strip()
        )
        systems = tuple(
            s.strip()
            for s in os.environ.get("BATON_BENCH_SYSTEMS", ",".join(SYSTEMS)).split(",")
            if s.strip()
        )
        unknown = set(scenarios) - set(SCENARIOS)
        unknown |= set(systems) - set(SYSTEMS)
        if unknown:
            raise ValueError(f"unknown scenario or system: {', '.join(sorted(unknown))}")
        return cls(
            scale=scale,
            workers=_env_int("BATON_BENCH_WORKERS", 2),
            concurrency=_env_int("BATON_BENCH_CONCURRENCY", 16),
            throughput_tasks=scaled(20_000),
            throughput_quota=_env_int("BATON_BENCH_THROUGHPUT_QUOTA", 1000),
            latency_tasks=scaled(2_000),
            latency_rate=_env_float("BATON_BENCH_LATENCY_RATE", 200.0),
            fairness_backlog=scaled(50_000),
            fairness_probe_tasks=max(10, scaled(100)),
            fairness_probe_seconds=5.0,
            fairness_wait_seconds=_env_float("BATON_BENCH_FAIRNESS_WAIT", 240.0),
            chain_length=40,
            chain_runs=_env_int("BATON_BENCH_CHAIN_RUNS", 5),
            fanout_width=scaled(500),
            fanout_runs=_env_int("BATON_BENCH_FANOUT_RUNS", 3),
            dag_layers=10,
            dag_width=scaled(100),
            dag_seed=_env_int("BATON_BENCH_DAG_SEED", 1000),
            dag_quota=_env_int("BATON_BENCH_DAG_QUOTA", 1000),
            dag_timeout=_env_float("BATON_BENCH_DAG_TIMEOUT", 300.0),
            schedule_tenants=scaled(500),
            schedules_per_tenant=20,
            schedule_lead_seconds=_env_float("BATON_BENCH_SCHEDULE_LEAD", 0.0),
            seed_seconds_per_schedule=_env_float("BATON_BENCH_SEED_SECONDS", 0.012),
            schedule_wait_seconds=_env_float("BATON_BENCH_SCHEDULE_WAIT", 600.0),
            beat_wait_seconds=_env_float("BATON_BENCH_BEAT_WAIT", 90.0),
            failover_tenants=20,
            failover_per_tenant=10,
            hourly_tenants=scaled(2000),
            hourly_per_tenant=50,
            hourly_lead_seconds=_env_float("BATON_BENCH_HOURLY_LEAD", 0.0),
            hourly_seed_seconds_per_schedule=_env_float("BATON_BENCH_HOURLY_SEED_SECONDS", 0.006),
            hourly_idle_seconds=_env_float("BATON_BENCH_IDLE_SECONDS", 60.0),
            hourly_prepared=_env_flag("BATON_BENCH_HOURLY_PREPARED", True),
            celery_pool=os.environ.get("BATON_BENCH_CELERY_POOL", "solo"),
            dramatiq_threads=_env_int("BATON_BENCH_DRAMATIQ_THREADS", 8),
            latency_delay_seconds=_env_float("BATON_BENCH_LATENCY_DELAY", 1.0),
            trigger_clients=_env_int("BATON_BENCH_TRIGGER_CLIENTS", 64),
            trigger_step_seconds=_env_float(
                "BATON_BENCH_TRIGGER_STEP_SECONDS", max(3.0, 10.0 * scale)
            ),
            trigger_p99_ms=_env_float("BATON_BENCH_TRIGGER_P99_MS", 50.0),
            trigger_engine=_env_flag("BATON_BENCH_TRIGGER_ENGINE", False),
            batch_size=1000,
            profile=_env_flag("BATON_BENCH_PROFILE", False),
            scenarios=scenarios,
            systems=systems,
            update_docs=_env_flag("BATON_BENCH_UPDATE_DOCS", True),
            docs_path=Path(os.environ.get("BATON_BENCH_DOCS", "") or DOCS),
            timeout_seconds=_env_float("BATON_BENCH_TIMEOUT", 3600.0),
        )


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0-100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(values_ms: Sequence[float], prefix: str = "") -> dict[str, float]:
    """p50/p95/p99/max/mean of millisecond values, rounded to 0.1 ms."""
    if not values_ms:
        return {}
    mean = sum(values_ms) / len(values_ms)
    return {
        f"{prefix}p50_ms": round(percentile(values_ms, 50), 1),
        f"{prefix}p95_ms": round(percentile(values_ms, 95), 1),
        f"{prefix}p99_ms": round(percentile(values_ms, 99), 1),
        f"{prefix}max_ms": round(max(values_ms), 1),
        f"{prefix}mean_ms": round(mean, 1),
    }


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    *,
    within: float,
    interval: float,
    what: str,
    on_tick: Callable[[], None] | None = None,
) -> None:
    """Poll ``check`` every ``interval`` s until true; :class:`BenchError` after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        if on_tick is not None:
            on_tick()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


async def reached(
    check: Callable[[], Awaitable[bool]], *, within: float, interval: float, what: str
) -> bool:
    """:func:`wait_until`, for a wait whose timeout is a result to report: True if ``check``
    held within ``within`` s, False if the time ran out."""
    try:
        await wait_until(check, within=within, interval=interval, what=what)
    except BenchError:
        return False
    return True


def rounded(value: float, digits: int = 1) -> float:
    return round(value, digits)


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("BATON_BENCH_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    # Baton's services called in this process (the scheduler scenarios create schedules
    # through them) log with structlog, by default to stdout - the JSON result lines' own
    # stream. Route them to stderr, warnings and errors only.
    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


JsonDict = dict[str, Any]


def spread(values: Sequence[float], prefix: str, digits: int = 3) -> dict[str, float]:
    """Median, min and max of ``values`` as ``{prefix}_median`` / ``_min`` / ``_max``."""
    if not values:
        return {}
    return {
        f"{prefix}_median": round(statistics.median(values), digits),
        f"{prefix}_min": round(min(values), digits),
        f"{prefix}_max": round(max(values), digits),
    }


def cpu_per_task(cpu: JsonDict, tasks: int, system: tuple[str, ...]) -> JsonDict:
    """Milliseconds of CPU per task, by component of ``cpu`` (a :class:`bench.cpu.CpuMeter`
    result), and ``system_cpu_ms_per_task``: the sum over ``system`` (the components that
    do the work: not the benchmark's client, not the rest of the machine)."""
    skip = {"window_s", "machine", "other", "cores"}
    if tasks <= 0:
        return {}
    per = {k: round(float(v) * 1000 / tasks, 3) for k, v in cpu.items() if k not in skip}
    total = sum(float(cpu.get(k, 0.0)) for k in system)
    return {"cpu_ms_per_task": per, "system_cpu_ms_per_task": round(total * 1000 / tasks, 3)}
