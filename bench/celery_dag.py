"""Celery's side of the DAG scenarios, as Celery canvases of the benchmark's no-op task.

- chain40: ``chain(noop.si() x 40)``. No result backend is involved: each task's message
  carries the rest of the chain and the worker sends the next one. The end is detected
  with the counter every no-op task keeps anyway (``bench.celery_app``), the lightest
  correct way: the run is over when the last task has run.
- fanout500: ``chain(noop.si(first), chord(group(noop.si() x 500), noop.si(join)))``: the
  worker that ran ``first`` sends the 500 tasks; a chord needs a result backend to count
  its finished header tasks (Redis, the broker's database 15), which then sends the join.
- dag1000: Celery's canvas has no "depends on these 2-3 tasks" edge, so the layered DAG
  becomes its nearest canvas, ``chain(chord(group(layer k), barrier k) for k in 0..9)``:
  every task of a layer waits for the whole previous layer (stricter than the DAG), the
  same 1,000 tasks plus 10 no-op barrier tasks.

Each run's time: ``apply_async`` called (the canvas is built before the clock starts) ->
the last task's body starting (its recorded start; the no-op body takes microseconds).
Exactly once: every task id of every run counted once.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celery import chain, chord, group

from bench import celery_app
from bench.common import BenchError, JsonDict, spread, wait_until
from bench.dags import chain_names, edge_count, layered_dag

if TYPE_CHECKING:
    from bench.celery_bench import CeleryBench, CeleryCluster

log = logging.getLogger("bench.celery.dag")

IDLE_SECONDS = 0.5  # pause between runs, as on the Baton side


def _noop(task_id: str) -> Any:
    return celery_app.noop.si(task_id)


def chain_canvas(run: str, length: int) -> tuple[Any, list[str]]:
    ids = [f"{run}-{name}" for name in chain_names(length)]
    return chain(*(_noop(i) for i in ids)), ids


def fanout_canvas(run: str, width: int) -> tuple[Any, list[str]]:
    parallel = [f"{run}-p{i:03d}" for i in range(width)]
    ids = [f"{run}-first", *parallel, f"{run}-join"]
    canvas = chain(_noop(ids[0]), chord(group(_noop(i) for i in parallel), _noop(ids[-1])))
    return canvas, ids


def dag_canvas(run: str, layers: int, width: int, seed: int) -> tuple[Any, list[str]]:
    """``chain(chord(group(layer 0), barrier 0), ..., chord(group(layer 9), barrier 9))``;
    the ids end with the barriers. (A chain of bare groups, which Celery upgrades to
    chords with group bodies, ran the third layer's tasks 10 times each in Celery 5.7.)"""
    shape = layered_dag(layers, width, seed)
    by_layer: dict[str, list[str]] = {}
    for name, _ in shape:
        by_layer.setdefault(name.split("_", 1)[0], []).append(f"{run}-{name}")
    barriers = [f"{run}-{layer}-barrier" for layer in by_layer]
    steps = [
        chord(group(_noop(i) for i in ids), _noop(barrier))
        for ids, barrier in zip(by_layer.values(), barriers, strict=True)
    ]
    return chain(*steps), [f"{run}-{name}" for name, _ in shape] + barriers


async def run_canvas(
    cluster: CeleryCluster,
    canvas: Any,
    ids: list[str],
    *,
    last: list[str],
    within: float,
    what: str,
) -> float:
    """Apply ``canvas``; seconds until every one of ``last`` has started, once all ``ids``
    have run (polled; the time itself comes from the tasks' own records)."""
    began = time.time()
    await asyncio.to_thread(canvas.apply_async)

    async def done() -> bool:
        cluster.procs.check_alive()
        found = await cluster.redis.hmget(celery_app.STARTS, ids)
        return all(v is not None for v in found)

    await wait_until(done, within=within, interval=0.02, what=what)
    ends = await cluster.redis.hmget(celery_app.STARTS, last)
    return max(float(v) for v in ends if v is not None) - began


async def _runs(
    bench: CeleryBench,
    cluster: CeleryCluster,
    build: Callable[[str], Any],
    *,
    runs: int,
    label: str,
    last: Callable[[list[str]], list[str]],
    warm: bool = True,
) -> tuple[list[float], JsonDict, list[str]]:
    """A warm-up run (if ``warm``), then ``runs`` measured runs one after another; (seconds
    per run, CPU over the measured runs, every measured task id)."""
    within = bench.cfg.dag_timeout
    if warm:
        canvas, ids = build(f"{label}-warm")
        await run_canvas(
            cluster, canvas, ids, last=last(ids), within=within, what=f"celery {label} warm-up"
        )
    measured: list[str] = []
    seconds: list[float] = []
    meter = await cluster.cpu_meter()
    meter.start()
    for n in range(runs):
        await asyncio.sleep(IDLE_SECONDS)
        canvas, ids = build(f"{label}-{n}")
        seconds.append(
            await run_canvas(
                cluster,
                canvas,
                ids,
                last=last(ids),
                within=within,
                what=f"celery {label} run {n + 1}/{runs}",
            )
        )
        measured += ids
        log.info("celery %s run %d/%d: %.3f s", label, n + 1, runs, seconds[-1])
    cpu = meter.stop()
    await asyncio.sleep(0.5)  # let a duplicate execution, if any, show up
    counts = await cluster.counts()
    wrong = {i: counts.get(i, 0) for i in measured if counts.get(i, 0) != 1}
    if wrong:
        raise BenchError(
            f"celery {label}: {len(wrong)} tasks did not run exactly once: "
            f"{dict(list(wrong.items())[:10])}"
        )
    return seconds, cpu, measured


def _worker_cpu(cpu: JsonDict, tasks: int) -> JsonDict:
    return {
        "worker_cpu_ms_per_task": round(float(cpu["workers"]) * 1000 / tasks, 2),
        "system_cpu_ms_per_task": round(
            (float(cpu["workers"]) + float(cpu["redis"])) * 1000 / tasks, 2
        ),
    }


def _setup(bench: CeleryBench, how: str) -> str:
    return f"{bench._pool_note()}; {how}"


async def chain40(bench: CeleryBench) -> JsonDict:
    cfg = bench.cfg
    length, runs = cfg.chain_length, cfg.chain_runs
    async with bench.cluster("celery-chain40") as cluster:
        seconds, cpu, _ = await _runs(
            bench,
            cluster,
            lambda r: chain_canvas(r, length),
            runs=runs,
            label="chain40",
            last=lambda ids: ids[-1:],
        )
    median = statistics.median(seconds)
    return {
        "tasks": length,
        "runs": runs,
        **spread(seconds, "seconds"),
        "per_step_ms_median": round(median * 1000 / length, 1),
        "per_step_ms_min": round(min(seconds) * 1000 / length, 1),
        "per_step_ms_max": round(max(seconds) * 1000 / length, 1),
        **_worker_cpu(cpu, length * runs),
        "exactly_once": True,
        "measured": "chain.apply_async() -> the last task's body starts",
        "workers": cfg.workers,
        "pool": cfg.celery_pool,
        "cpu_seconds": cpu,
        "setup": _setup(bench, "chain(noop.si() x 40), no result backend used"),
    }


async def fanout500(bench: CeleryBench) -> JsonDict:
    cfg = bench.cfg
    width, runs = cfg.fanout_width, cfg.fanout_runs
    async with bench.cluster("celery-fanout500") as cluster:
        seconds, cpu, _ = await _runs(
            bench,
            cluster,
            lambda r: fanout_canvas(r, width),
            runs=runs,
            label="fanout500",
            last=lambda ids: ids[-1:],
        )
    return {
        "width": width,
        "tasks": width + 2,
        "runs": runs,
        "variant": "chain(first, chord(group(500), join)): the 500 tasks written out",
        **spread(seconds, "seconds"),
        **_worker_cpu(cpu, (width + 2) * runs),
        "exactly_once": True,
        "measured": "apply_async() -> the join's body starts",
        "workers": cfg.workers,
        "pool": cfg.celery_pool,
        "cpu_seconds": cpu,
        "setup": _setup(
            bench, f"chords count in the Redis result backend (DB {bench.url.rsplit('/', 1)[-1]})"
        ),
    }


async def dag1000(bench: CeleryBench) -> JsonDict:
    cfg = bench.cfg
    layers, width, seed = cfg.dag_layers, cfg.dag_width, cfg.dag_seed
    total = layers * width
    async with bench.cluster("celery-dag1000") as cluster:
        seconds, cpu, _ = await _runs(
            bench,
            cluster,
            lambda r: dag_canvas(r, layers, width, seed),
            runs=1,
            label="dag1000",
            last=lambda ids: ids[-1:],
            warm=False,
        )
    return {
        "tasks": total,
        "barrier_tasks": layers,
        "layers": layers,
        "width": width,
        "edges": edge_count(layered_dag(layers, width, seed)),
        "seconds": round(seconds[0], 3),
        "tasks_per_s": round(total / seconds[0], 1),
        **_worker_cpu(cpu, total + layers),
        "exactly_once": True,
        "measured": "apply_async() -> the last layer's barrier task starts; each layer a "
        "chord waiting for the whole previous layer",
        "workers": cfg.workers,
        "pool": cfg.celery_pool,
        "cpu_seconds": cpu,
        "setup": _setup(
            bench, "chain(chord(group(layer), barrier) x 10): Celery has no per-task edges"
        ),
    }
