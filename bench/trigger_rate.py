"""The trigger_rate scenario: how many single triggers per second one ``baton api`` process
sustains with p99 <= 50 ms, and the same load on the cheapest possible endpoint.

The load comes from ``bench.loadgen`` in a process of its own (``BATON_BENCH_TRIGGER_CLIENTS``
keep-alive connections, 64 by default; its method is in its docstring: a closed-loop step,
then open-loop steps at rising rates). First against ``baton api`` (``POST
/api/v1/jobs/{id}/runs`` with a tenant's token, body ``{"params": {}}``), then against
``bench.ceiling_app`` (one asyncpg INSERT per request, served by uvicorn like the API) on
the same database: the ceiling. By default the API runs alone (no engine, no workers: the
runs stay queued), so the figure is the trigger path's own; ``BATON_BENCH_TRIGGER_ENGINE=1``
runs the engine and the workers beside it, as in production, sharing the 2 cores.
Every trigger answered 201 must be a committed run: the runs are counted in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from bench.common import BenchConfig, BenchError, JsonDict, wait_until
from bench.cpu import CpuMeter, postgres_backends, tree
from bench.procs import ProcessSet
from bench.profiling import PgSampler, Profiler
from bench.services import redis_pid

if TYPE_CHECKING:
    from bench.baton_bench import BatonBench, Cluster

_RUNS = "SELECT count(*) FROM runs WHERE tenant_id = $1 AND job_id = $2"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spec(cfg: BenchConfig, port: int, path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "path": path,
        "headers": headers,
        "body": {"params": {}},
        "connections": cfg.trigger_clients,
        "step_seconds": cfg.trigger_step_seconds,
        "p99_ms": cfg.trigger_p99_ms,
    }


async def run_loadgen(
    procs: ProcessSet, name: str, spec: dict[str, Any], meter: CpuMeter
) -> tuple[JsonDict, JsonDict]:
    """Run the load generator to its end; its result and the CPU meter's (with the
    generator's own CPU, which it reports itself, as ``loadgen``)."""
    spec_path = procs.log_dir / f"{name}-spec.json"
    out_path = procs.log_dir / f"{name}-result.json"
    spec_path.write_text(json.dumps(spec))
    meter.start()
    child = procs.start(
        name, [sys.executable, "-m", "bench.loadgen", str(spec_path), str(out_path)]
    )
    child.expect_exit = True
    code = await asyncio.to_thread(child.process.wait)
    cpu = meter.stop()
    if code != 0 or not out_path.exists():
        raise BenchError(f"{name} exited with {code}\n{child.tail()}")
    result: JsonDict = json.loads(out_path.read_text())
    # The generator has exited by now, so the meter could not read it: it reports itself.
    own = float(result["cpu_seconds_total"])
    cpu["loadgen"] = round(own, 2)
    cpu["other"] = round(max(float(cpu["other"]) - own, 0.0), 2)
    return result, cpu


def _per_trigger(cpu: JsonDict, requests: int, parts: tuple[str, ...]) -> JsonDict:
    if requests <= 0:
        return {}
    per = {p: round(float(cpu.get(p, 0.0)) * 1000 / requests, 3) for p in parts}
    return {
        "cpu_ms_per_trigger": per,
        "system_cpu_ms_per_trigger": round(sum(per.values()) - per.get("loadgen", 0.0), 3),
    }


def _trim(result: JsonDict, prefix: str) -> JsonDict:
    closed = result["closed_loop"]
    return {
        f"{prefix}sustained_per_s": result["sustained_per_s"],
        f"{prefix}sustained_p50_ms": result["sustained_p50_ms"],
        f"{prefix}sustained_p99_ms": result["sustained_p99_ms"],
        f"{prefix}closed_loop_per_s": closed["achieved_per_s"],
        f"{prefix}closed_loop_p50_ms": closed["p50_ms"],
        f"{prefix}closed_loop_p99_ms": closed["p99_ms"],
        f"{prefix}loadgen_cpu_share_max": result["client_cpu_share_max"],
        f"{prefix}requests_ok": result["requests_ok"],
        f"{prefix}steps": result["steps"],
    }


async def _baton(bench: BatonBench) -> JsonDict:
    cfg = bench.cfg
    full = cfg.trigger_engine
    async with bench.cluster(
        "baton-trigger-rate", quota=cfg.throughput_quota, workers=full, engine=full
    ) as cluster:
        tenant = await cluster.signup("trigger-rate")
        job = await cluster.create_job(tenant, "bench")
        port = int(urlsplit(str(cluster.client.base_url)).port or 0)
        profiler = Profiler(cluster.procs.log_dir) if cfg.profile else None
        sampler = PgSampler(bench.database.asyncpg_dsn(), bench.database.name)
        if profiler is not None:
            profiler.start("api", cluster.pid("api"))
            sampler.start()
        meter = await _baton_meter(bench, cluster)
        spec = _spec(cfg, port, f"/api/v1/jobs/{job}/runs", tenant.headers)
        result, cpu = await run_loadgen(cluster.procs, "loadgen", spec, meter)
        await bench._report_profiles(cluster, profiler, sampler, "trigger_rate")
        runs = int((await bench.db.fetchrow(tenant, _RUNS, job))[0])
    parts = ("api", "scheduler", "workers", "postgres", "redis", "loadgen")
    return {
        **_trim(result, ""),
        "runs_committed": runs,
        "every_201_committed": runs == result["requests_ok"],
        "cpu_seconds": cpu,
        **_per_trigger(cpu, int(result["requests_ok"]), parts),
    }


async def _baton_meter(bench: BatonBench, cluster: Cluster) -> CpuMeter:
    procs, database = cluster.procs, bench.database.name
    redis = await redis_pid(bench.services.baton_redis_url)
    return CpuMeter(
        {
            "api": lambda: [c.pid for c in procs.by_name("api")],
            "scheduler": lambda: [c.pid for c in procs.by_name("scheduler")],
            "workers": lambda: [p for c in procs.by_name("worker-") for p in tree(c.pid)],
            "postgres": lambda: postgres_backends(database),
            "redis": lambda: [redis] if redis else [],
        }
    )


async def _ceiling(bench: BatonBench) -> JsonDict:
    cfg = bench.cfg
    out = bench.log_dir / "ceiling-trigger-rate"
    out.mkdir(parents=True, exist_ok=True)
    dsn = bench.database.asyncpg_dsn()
    port = _free_port()
    procs = ProcessSet(out, {**_base_env(), "BATON_BENCH_CEILING_DSN": dsn})
    try:
        procs.start(
            "ceiling",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.ceiling_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
        )
        path = f"/api/v1/jobs/{uuid.uuid4()}/runs"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def ready() -> bool:
                procs.check_alive()
                try:
                    response = await client.post(path, json={"params": {}})
                except httpx.HTTPError:
                    return False
                return response.status_code == 201

            await wait_until(ready, within=60, interval=0.2, what="the ceiling app")
        database = bench.database.name
        meter = CpuMeter(
            {
                "ceiling_app": lambda: [c.pid for c in procs.by_name("ceiling")],
                "postgres": lambda: postgres_backends(database),
            }
        )
        result, cpu = await run_loadgen(procs, "loadgen", _spec(cfg, port, path, {}), meter)
        conn = await asyncpg.connect(dsn)
        try:
            rows = int(await conn.fetchval("SELECT count(*) FROM bench_ceiling") or 0)
            await conn.execute("DROP TABLE bench_ceiling")
        finally:
            await conn.close()
    except BaseException:
        procs.dump_tails()
        raise
    finally:
        await asyncio.to_thread(procs.stop_all)
    return {
        **_trim(result, "ceiling_"),
        "ceiling_rows_committed": rows,
        # the readiness probe's one 201 made a row too
        "ceiling_every_201_committed": rows == int(result["requests_ok"]) + 1,
        "ceiling_cpu_seconds": cpu,
        **{
            f"ceiling_{k}": v
            for k, v in _per_trigger(
                cpu, int(result["requests_ok"]), ("ceiling_app", "postgres", "loadgen")
            ).items()
        },
    }


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}


async def trigger_rate(bench: BatonBench) -> JsonDict:
    cfg = bench.cfg
    baton = await _baton(bench)
    ceiling = await _ceiling(bench)
    top = ceiling["ceiling_sustained_per_s"]
    return {
        **baton,
        **ceiling,
        "share_of_ceiling": round(baton["sustained_per_s"] / top, 3) if top else None,
        "clients": cfg.trigger_clients,
        "step_seconds": cfg.trigger_step_seconds,
        "p99_limit_ms": cfg.trigger_p99_ms,
        "measured": "bench.loadgen (own process): open-loop steps, latency from the due "
        "instant to the whole response; sustained = best achieved rate of a "
        "step with p99 <= the limit, >= 97 % of the offered rate, no error",
        "setup": (
            "1 baton api"
            + (
                f" + 1 scheduler + {cfg.workers} baton worker"
                if cfg.trigger_engine
                else " alone (no engine, no workers)"
            )
            + f"; {cfg.trigger_clients} keep-alive clients; ceiling: bench.ceiling_app "
            "(uvicorn, one asyncpg INSERT per request)"
        ),
    }
