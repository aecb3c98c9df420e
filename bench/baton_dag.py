"""Baton's DAG-engine scenarios: chain40, fanout500 and dag1000 (shapes in bench.dags).

Each run is one ``POST /api/v1/jobs/{id}/runs``; it is timed in PostgreSQL, from
``runs.created_at`` (stamped by the API) to ``runs.finished_at`` (the engine has recorded
the run's outcome), and checked there: every task run succeeded, each executed exactly
once (one attempt, attempt 1). Runs of a scenario go one after another, each into an idle
cluster (the same processes as the other scenarios: API, engine, 2 workers x 16).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.common import BenchError, JsonDict, spread
from bench.dags import chain_names, edge_count, layered_dag
from bench.profiling import PgSampler, Profiler

if TYPE_CHECKING:
    from bench.baton_bench import BatonBench, Cluster, Tenant

log = logging.getLogger("bench.baton.dag")

NOOP = "worker.builtins:noop"
ECHO = "worker.builtins:echo"
POLL_SECONDS = 0.05  # how often we look for the run's end (timing comes from PostgreSQL)
IDLE_SECONDS = 0.5  # pause between runs, so each starts into an idle cluster

_RUN = """
SELECT status, reason,
       extract(epoch FROM created_at)::float8 AS created,
       extract(epoch FROM finished_at)::float8 AS finished
  FROM runs WHERE tenant_id = $1 AND id = $2
"""
_RUN_TASKS = """
SELECT name, status, attempt,
       id IN (SELECT parent_id FROM task_runs
               WHERE tenant_id = $1 AND run_id = $2 AND parent_id IS NOT NULL) AS is_group,
       extract(epoch FROM dispatched_at)::float8 AS dispatched,
       extract(epoch FROM started_at)::float8 AS started,
       extract(epoch FROM finished_at)::float8 AS finished
  FROM task_runs WHERE tenant_id = $1 AND run_id = $2
"""
_RUN_ATTEMPTS = """
SELECT count(*) AS attempts,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(DISTINCT task_run_id) AS distinct_tasks
  FROM task_attempts WHERE tenant_id = $1 AND run_id = $2
"""
_RUN_STATUS_COUNTS = """
SELECT status, count(*) AS n FROM task_runs WHERE tenant_id = $1 AND run_id = $2
 GROUP BY status
"""


# -- job specs ------------------------------------------------------------------------
def _noop(name: str, depends_on: list[str] | None = None) -> dict[str, Any]:
    task: dict[str, Any] = {"name": name, "type": "python", "function": NOOP}
    if depends_on:
        task["depends_on"] = depends_on
    return task


def chain_tasks(length: int) -> list[dict[str, Any]]:
    names = chain_names(length)
    return [_noop(name, [names[i - 1]] if i else None) for i, name in enumerate(names)]


def fanout_explicit_tasks(width: int) -> list[dict[str, Any]]:
    """first -> p000 .. p499 (500 tasks written out in the spec) -> join."""
    parallel = [f"p{i:03d}" for i in range(width)]
    return [_noop("first"), *(_noop(name, ["first"]) for name in parallel), _noop("join", parallel)]


def fanout_for_each_tasks(width: int) -> list[dict[str, Any]]:
    """make (outputs a list of ``width`` items) -> each[i] per item (for_each) -> join."""
    make = {
        "name": "make",
        "type": "python",
        "function": ECHO,
        "kwargs": {"value": list(range(width))},
    }
    each = {**_noop("each", ["make"]), "for_each": "tasks.make.output"}
    return [make, each, _noop("join", ["each"])]


def dag_tasks(layers: int, width: int, seed: int) -> list[dict[str, Any]]:
    return [_noop(name, deps) for name, deps in layered_dag(layers, width, seed)]


# -- one run ----------------------------------------------------------------------------
@dataclass
class RunResult:
    seconds: float  # runs.created_at -> runs.finished_at
    worker_seconds: float  # runs.created_at -> the last task's finished_at (worker's stamp)
    first_start_ms: float  # runs.created_at -> the first task's started_at
    tasks: list[Any]  # the run's task_runs rows
    executed: int  # task runs a worker ran (a for_each group itself is not run)
    ran: list[Any]  # their rows


async def run_once(
    bench: BatonBench,
    cluster: Cluster,
    tenant: Tenant,
    job_id: uuid.UUID,
    *,
    executed: int,
    what: str,
) -> RunResult:
    """Trigger one run, wait for its end, check it; :class:`BenchError` if it failed, timed
    out (``cfg.dag_timeout``) or did not run each of its ``executed`` tasks exactly once."""
    run_id = uuid.UUID(await cluster.trigger_one(tenant, job_id))
    deadline = time.monotonic() + bench.cfg.dag_timeout
    next_log = time.monotonic() + 10
    while True:
        cluster.procs.check_alive()
        row = await bench.db.fetchrow(tenant, _RUN, run_id)
        if row["finished"] is not None:
            break
        if time.monotonic() > next_log:
            next_log = time.monotonic() + 10
            log.info("%s: %s", what, await _status_counts(bench, tenant, run_id))
        if time.monotonic() > deadline:
            raise BenchError(
                f"{what}: run {run_id} not finished after "
                f"{bench.cfg.dag_timeout:.0f} s; tasks: "
                f"{await _status_counts(bench, tenant, run_id)}"
            )
        await asyncio.sleep(POLL_SECONDS)
    tasks = await bench.db.fetch(tenant, _RUN_TASKS, run_id)
    attempts = await bench.db.fetchrow(tenant, _RUN_ATTEMPTS, run_id)
    ran = [t for t in tasks if t["started"] is not None and not t["is_group"]]
    not_ok = sorted(t["name"] for t in tasks if t["status"] != "succeeded")
    checks = {
        "run_status": row["status"],
        "task_runs": len(tasks),
        "executed": len(ran),
        "attempts": int(attempts["attempts"]),
        "attempts_succeeded": int(attempts["succeeded"]),
        "tasks_with_attempts": int(attempts["distinct_tasks"]),
        "max_attempt": max((int(t["attempt"]) for t in ran), default=0),
    }
    if (
        row["status"] != "succeeded"
        or not_ok
        or len(ran) != executed
        or checks["attempts"] != executed
        or checks["attempts_succeeded"] != executed
        or checks["tasks_with_attempts"] != executed
        or checks["max_attempt"] != 1
    ):
        raise BenchError(
            f"{what}: run {run_id} is not {executed} tasks each run exactly once "
            f"and succeeded: {checks}; not succeeded: {not_ok[:10]} "
            f"(reason {row['reason']!r})"
        )
    created = float(row["created"])
    return RunResult(
        seconds=float(row["finished"]) - created,
        worker_seconds=max(float(t["finished"]) for t in ran) - created,
        first_start_ms=(min(float(t["started"]) for t in ran) - created) * 1000,
        tasks=tasks,
        executed=executed,
        ran=ran,
    )


async def _status_counts(bench: BatonBench, tenant: Tenant, run_id: uuid.UUID) -> str:
    rows = await bench.db.fetch(tenant, _RUN_STATUS_COUNTS, run_id)
    return ", ".join(f"{r['status']} {r['n']}" for r in rows) or "none yet"


async def measured_runs(
    bench: BatonBench,
    cluster: Cluster,
    tenant: Tenant,
    job_id: uuid.UUID,
    *,
    runs: int,
    executed: int,
    label: str,
) -> tuple[list[RunResult], JsonDict]:
    """``runs`` runs one after another inside one CPU (and, if asked, py-spy) window."""
    profiler = None
    sampler = PgSampler(bench.database.asyncpg_dsn(), bench.database.name)
    if bench.cfg.profile:
        out = cluster.procs.log_dir / label.replace("/", "-")
        out.mkdir(parents=True, exist_ok=True)
        profiler = Profiler(out)
        profiler.start("engine", cluster.pid("scheduler"))
        profiler.start("worker", cluster.pid("worker-1"))
        profiler.start("api", cluster.pid("api"))
        sampler.start()
    meter = await cluster.cpu_meter()
    meter.start()
    results: list[RunResult] = []
    for i in range(runs):
        results.append(
            await run_once(
                bench,
                cluster,
                tenant,
                job_id,
                executed=executed,
                what=f"baton {label} run {i + 1}/{runs}",
            )
        )
        log.info("baton %s run %d/%d: %.3f s", label, i + 1, runs, results[-1].seconds)
        if i + 1 < runs:
            await asyncio.sleep(IDLE_SECONDS)
    cpu = meter.stop()
    await bench._report_profiles(cluster, profiler, sampler, label)
    return results, cpu


def timing(results: list[RunResult], prefix: str = "") -> JsonDict:
    """Median/min/max of the runs' seconds (engine and worker view) and first start."""
    return {
        **spread([r.seconds for r in results], f"{prefix}seconds"),
        **spread([r.worker_seconds for r in results], f"{prefix}worker_done_seconds"),
        **spread([r.first_start_ms for r in results], f"{prefix}first_start_ms", 1),
    }


def engine_cpu(cpu: JsonDict, tasks: int, prefix: str = "") -> JsonDict:
    """Scheduler (engine) and total CPU milliseconds per executed task over the window."""
    total = sum(
        float(cpu.get(k, 0.0)) for k in ("api", "scheduler", "workers", "postgres", "redis")
    )
    return {
        f"{prefix}engine_cpu_ms_per_task": round(float(cpu["scheduler"]) * 1000 / tasks, 2),
        f"{prefix}postgres_cpu_ms_per_task": round(float(cpu["postgres"]) * 1000 / tasks, 2),
        f"{prefix}system_cpu_ms_per_task": round(total * 1000 / tasks, 2),
    }


def _ms(value: float) -> float:
    return round(value * 1000, 1)


def _by_name(result: RunResult) -> dict[str, Any]:
    return {t["name"]: t for t in result.tasks}


def _setup(bench: BatonBench) -> str:
    cfg = bench.cfg
    return (
        f"{cfg.workers} baton worker x {cfg.concurrency} + 1 scheduler + 1 api; "
        f"one POST /runs per run, runs one after another; tenant quota {cfg.dag_quota}"
    )


# -- scenarios ------------------------------------------------------------------------
async def chain40(bench: BatonBench) -> JsonDict:
    cfg = bench.cfg
    length, runs = cfg.chain_length, cfg.chain_runs
    async with bench.cluster("baton-chain40", quota=cfg.dag_quota) as cluster:
        tenant = await cluster.signup("chain40")
        await bench._warm(cluster, tenant)
        job = await cluster.create_job(tenant, "chain40", chain_tasks(length))
        await run_once(bench, cluster, tenant, job, executed=length, what="chain40 warm-up")
        results, cpu = await measured_runs(
            bench, cluster, tenant, job, runs=runs, executed=length, label="chain40"
        )
    names = chain_names(length)
    hops: list[float] = []  # step i finished -> step i+1 started (the engine's hop)
    # The hop in two: until the engine's transaction that dispatched step i+1 began
    # (``dispatched_at`` is that transaction's ``now()``), and from then to the start.
    to_engine: list[float] = []
    to_start: list[float] = []
    for result in results:
        tasks = _by_name(result)
        for a, b in itertools.pairwise(names):
            finished, began = float(tasks[a]["finished"]), float(tasks[b]["dispatched"])
            started = float(tasks[b]["started"])
            hops.append(started - finished)
            to_engine.append(began - finished)
            to_start.append(started - began)
    seconds = [r.seconds for r in results]
    return {
        "tasks": length,
        "runs": runs,
        **timing(results),
        "per_step_ms_median": _ms(statistics.median(seconds) / length),
        "per_step_ms_min": _ms(min(seconds) / length),
        "per_step_ms_max": _ms(max(seconds) / length),
        "hop_ms_p50": _ms(statistics.median(hops)),
        "hop_ms_max": _ms(max(hops)),
        "hop_to_engine_ms_p50": _ms(statistics.median(to_engine)),
        "hop_engine_to_start_ms_p50": _ms(statistics.median(to_start)),
        **engine_cpu(cpu, length * runs),
        "measured": "runs.created_at (API) -> runs.finished_at (engine); hop: task i "
        "finished_at -> task i+1 started_at (worker stamps)",
        "workers": cfg.workers,
        "concurrency": cfg.concurrency,
        "tenant_quota": cfg.dag_quota,
        "cpu_seconds": cpu,
        "setup": _setup(bench),
    }


def _fanout_phases(results: list[RunResult], first: str, join: str) -> JsonDict:
    """Per run: first finished -> last parallel task started (dispatching the fan-out) and
    last parallel task finished -> join started (noticing the group is done)."""
    dispatch, join_wait = [], []
    for result in results:
        tasks = {t["name"]: t for t in result.ran}
        parallel = [t for name, t in tasks.items() if name not in (first, join)]
        dispatch.append(
            max(float(t["started"]) for t in parallel) - float(tasks[first]["finished"])
        )
        join_wait.append(
            float(tasks[join]["started"]) - max(float(t["finished"]) for t in parallel)
        )
    return {
        "fanout_dispatch_ms_median": _ms(statistics.median(dispatch)),
        "join_wait_ms_median": _ms(statistics.median(join_wait)),
    }


async def fanout500(bench: BatonBench) -> JsonDict:
    """Both ways to write it: ``for_each`` over the first task's 500-item output (the
    primary figures) and 500 tasks written out in the spec (``explicit_*``)."""
    cfg = bench.cfg
    width, runs = cfg.fanout_width, cfg.fanout_runs
    executed = width + 2
    async with bench.cluster("baton-fanout500", quota=cfg.dag_quota) as cluster:
        tenant = await cluster.signup("fanout500")
        await bench._warm(cluster, tenant)
        dynamic = await cluster.create_job(tenant, "fanout-for-each", fanout_for_each_tasks(width))
        static = await cluster.create_job(tenant, "fanout-explicit", fanout_explicit_tasks(width))
        await run_once(
            bench, cluster, tenant, dynamic, executed=executed, what="fanout500 for_each warm-up"
        )
        await run_once(
            bench, cluster, tenant, static, executed=executed, what="fanout500 explicit warm-up"
        )
        results, cpu = await measured_runs(
            bench,
            cluster,
            tenant,
            dynamic,
            runs=runs,
            executed=executed,
            label="fanout500-for_each",
        )
        await asyncio.sleep(IDLE_SECONDS)
        explicit, explicit_cpu = await measured_runs(
            bench, cluster, tenant, static, runs=runs, executed=executed, label="fanout500-explicit"
        )
    phases = _fanout_phases(results, "make", "join")
    explicit_phases = _fanout_phases(explicit, "first", "join")
    return {
        "width": width,
        "tasks": executed,
        "runs": runs,
        "variant": "for_each over the first task's output (explicit_*: tasks written out)",
        **timing(results),
        **phases,
        **engine_cpu(cpu, executed * runs),
        **timing(explicit, "explicit_"),
        **{f"explicit_{k}": v for k, v in explicit_phases.items()},
        **engine_cpu(explicit_cpu, executed * runs, "explicit_"),
        "measured": "runs.created_at (API) -> runs.finished_at (engine)",
        "workers": cfg.workers,
        "concurrency": cfg.concurrency,
        "tenant_quota": cfg.dag_quota,
        "cpu_seconds": cpu,
        "explicit_cpu_seconds": explicit_cpu,
        "setup": _setup(bench),
    }


async def dag1000(bench: BatonBench) -> JsonDict:
    cfg = bench.cfg
    shape = layered_dag(cfg.dag_layers, cfg.dag_width, cfg.dag_seed)
    total = len(shape)
    async with bench.cluster("baton-dag1000", quota=cfg.dag_quota) as cluster:
        tenant = await cluster.signup("dag1000")
        await bench._warm(cluster, tenant)
        job = await cluster.create_job(
            tenant, "dag1000", dag_tasks(cfg.dag_layers, cfg.dag_width, cfg.dag_seed)
        )
        results, cpu = await measured_runs(
            bench, cluster, tenant, job, runs=1, executed=total, label="dag1000"
        )
    result = results[0]
    return {
        "tasks": total,
        "layers": cfg.dag_layers,
        "width": cfg.dag_width,
        "edges": edge_count(shape),
        "seed": cfg.dag_seed,
        "seconds": round(result.seconds, 3),
        "worker_done_seconds": round(result.worker_seconds, 3),
        "first_start_ms": round(result.first_start_ms, 1),
        "tasks_per_s": round(total / result.seconds, 1),
        **engine_cpu(cpu, total),
        "measured": "runs.created_at (API) -> runs.finished_at (engine); engine CPU = the "
        "scheduler process's CPU seconds over the run / tasks",
        "workers": cfg.workers,
        "concurrency": cfg.concurrency,
        "tenant_quota": cfg.dag_quota,
        "cpu_seconds": cpu,
        "setup": _setup(bench),
    }
