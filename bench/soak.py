"""The soak scenario: a steady load of triggers for several minutes under a short retention;
do Redis memory, the history tables and the trigger latency stay flat?

One ``baton api``, one ``baton scheduler`` (engine, cron, meter) and the workers run as in
production. The benchmark triggers one-task runs open-loop at ``BATON_BENCH_SOAK_RATE``/s
for ``BATON_BENCH_SOAK_MINUTES`` and, every ``BATON_BENCH_SOAK_SAMPLE_SECONDS``, samples:
Redis ``used_memory`` and the tenant's stream lengths (the engine trims them below their
oldest unsettled entry, ``BATON_STREAM_TRIM_SECONDS`` = 2 here), the size of each history
table (``pg_total_relation_size`` over its partitions) and its rows, and the p99 of the
trigger requests answered in that window (due instant to whole response).

A retention of seconds cannot be set (plans count days), so the benchmark runs the
retention pass itself after each window, for the tenant, with its clock advanced so that
the cutoff is ``BATON_BENCH_SOAK_RETENTION_SECONDS`` ago (``retention.service.prune_tenant``
with ``now`` moved: the very code the meter's pass runs). Slopes are least-squares fits per
minute over the samples after the first minute (warm-up).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx
from redis.asyncio import Redis

from bench.common import JsonDict, latency_summary

if TYPE_CHECKING:
    from bench.baton_bench import BatonBench, Tenant

TABLES = ("runs", "task_runs", "task_attempts", "task_logs", "schedule_ticks")
# A table's size with its indexes and TOAST; a partitioned one's is its partitions'.
_SIZE = """
    SELECT pg_total_relation_size($2::regclass) + coalesce(
        (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree($2::regclass)
          WHERE relid <> $2::regclass), 0)
     WHERE $1::uuid IS NOT NULL
"""
_ROWS = "SELECT count(*) FROM runs WHERE tenant_id = $1"
_DEAD = """
    SELECT sum(n_dead_tup) FILTER (WHERE relname = 'runs') AS runs,
           sum(n_dead_tup) FILTER (WHERE relname = 'task_runs') AS task_runs,
           sum(autovacuum_count) AS autovacuums
      FROM pg_stat_user_tables
     WHERE relname IN ('runs', 'task_runs', 'task_attempts') AND $1::uuid IS NOT NULL
"""


def _env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute (None: < 2 points)."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return round(cov / var * 60, 3)


async def soak(bench: BatonBench) -> JsonDict:
    # Imported here: the API's packages, which only this scenario uses in the bench process.
    from backend.core.db import create_engine, create_sessionmaker
    from backend.core.models import utcnow
    from backend.core.settings import Settings
    from backend.retention.service import prune_tenant

    minutes = max(_env("BATON_BENCH_SOAK_MINUTES", 5.0 * min(bench.cfg.scale, 1.0)), 1.0)
    rate = _env("BATON_BENCH_SOAK_RATE", 20.0)
    window = _env("BATON_BENCH_SOAK_SAMPLE_SECONDS", 10.0)
    retention = _env("BATON_BENCH_SOAK_RETENTION_SECONDS", 60.0)
    settings = Settings(_env_file=None, database_url=bench.database.owner_url)
    engine = create_engine(settings.owner_database_url(), pool_size=2)
    sessionmaker = create_sessionmaker(engine)
    redis = Redis.from_url(bench.services.baton_redis_url, decode_responses=True)
    samples: list[JsonDict] = []
    answered_all: list[float] = []
    pruned_runs = retried = 0
    try:
        extra = {"BATON_STREAM_TRIM_SECONDS": "2"}
        async with bench.cluster("baton-soak", quota=1000, extra_env=extra) as cluster:
            tenant = await cluster.signup("soak")
            job = await cluster.create_job(tenant, "soak")

            async def trigger() -> str:
                # The pauses between windows (retention pass, sampling) outlast uvicorn's
                # keep-alive: a pooled connection the server closed meanwhile fails at
                # once; that request is sent again on a fresh one (counted).
                nonlocal retried
                try:
                    return await cluster.trigger_one(tenant, job)
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    retried += 1
                    return await cluster.trigger_one(tenant, job)

            async with bench.db.pool.acquire() as conn:
                autovacuum = str(await conn.fetchval("SHOW autovacuum"))
            began = time.monotonic()
            while time.monotonic() - began < minutes * 60:
                count = max(1, round(rate * window))
                sent = await cluster.open_loop(count, rate, trigger)
                answered = [(done - due) * 1000 for _, due, done in sent]
                answered_all.extend(answered)
                cluster.procs.check_alive()
                later = utcnow() + timedelta(days=1) - timedelta(seconds=retention)
                report = await prune_tenant(sessionmaker, settings, tenant.id, 1, now=later)
                pruned_runs += report.runs
                if autovacuum != "on":
                    # Deleted rows are reclaimed by autovacuum in production; a server that
                    # has it off would only measure dead tuples piling up.
                    async with bench.db.pool.acquire() as conn:
                        await conn.execute(f"VACUUM {', '.join(TABLES)}")
                samples.append(await _sample(bench, redis, tenant, began, answered))
            row = await cluster.wait_done(
                tenant, job, 0, within=300, what="baton soak (the last runs)"
            )
    finally:
        await redis.aclose()
        await engine.dispose()
    steady = [s for s in samples if float(s["t"]) >= 60] or samples

    half = [s for s in samples if float(s["t"]) >= minutes * 30] or samples

    def series(key: str, part: list[JsonDict]) -> list[tuple[float, float]]:
        return [(float(s["t"]), float(s[key])) for s in part]

    keys = ["redis_used_memory", "redis_keys", "redis_key_bytes", "redis_updates_bytes"]
    keys += ["redis_other_key_bytes", "stream_entries", "runs_kept", "runs_dead_tuples"]
    keys += ["p99_ms"] + [f"{table}_bytes" for table in TABLES]
    return {
        "minutes": minutes,
        "target_rate_per_s": rate,
        "retention_seconds": retention,
        "triggers": len(answered_all),
        "runs_pruned": pruned_runs,
        "triggers_resent_after_keepalive_close": retried,
        "tasks_succeeded": int(row["succeeded"]),
        **latency_summary(answered_all, "trigger_"),
        "autovacuum": autovacuum,
        "vacuum_by_bench": autovacuum != "on",
        "slopes_per_minute": {key: slope_per_minute(series(key, steady)) for key in keys},
        # Capped structures (the live-updates stream) fill during the first minutes.
        "slopes_per_minute_second_half": {key: slope_per_minute(series(key, half)) for key in keys},
        "first": {key: samples[0][key] for key in keys} if samples else {},
        "last": {key: samples[-1][key] for key in keys} if samples else {},
        "samples": samples,
        "measured": "every window: Redis INFO used_memory (server-wide), the keys of the "
        "bench's Redis database and their MEMORY USAGE, XLEN of the tenant's streams, "
        "pg_total_relation_size per history table, runs kept, p99 of the window's "
        "trigger requests; slopes: least squares per minute after the first minute",
        "setup": f"{bench.cfg.workers} baton worker + 1 scheduler + 1 api; open-loop "
        f"POST /runs at {rate}/s; retention pass of {retention:g} s after each "
        f"{window:g} s window; streams trimmed every 2 s",
    }


async def _sample(
    bench: BatonBench, redis: Redis, tenant: Tenant, began: float, answered: list[float]
) -> JsonDict:
    tenant_id = tenant.id
    memory = await redis.info("memory")
    streams = keys = key_bytes = updates_bytes = 0
    async for key in redis.scan_iter(count=1000):  # the benchmark's own Redis database
        keys += 1
        used = int(await redis.memory_usage(key) or 0)
        key_bytes += used
        if key.endswith(":updates"):  # live updates: capped at UPDATES_HISTORY entries
            updates_bytes += used
        if key.startswith(f"baton:{{{tenant_id}}}:") and (key.endswith(":events") or ":q:" in key):
            streams += int(await redis.xlen(key))
    sizes: JsonDict = {}
    for table in TABLES:
        row = await bench.db.fetchrow(tenant, _SIZE, table)
        sizes[f"{table}_bytes"] = int(row[0])
    runs = int((await bench.db.fetchrow(tenant, _ROWS))[0])
    dead = await bench.db.fetchrow(tenant, _DEAD)
    ordered = sorted(answered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
    return {
        "t": round(time.monotonic() - began, 1),
        "redis_used_memory": int(memory["used_memory"]),
        "redis_keys": keys,
        "redis_key_bytes": key_bytes,
        "redis_updates_bytes": updates_bytes,
        "redis_other_key_bytes": key_bytes - updates_bytes,
        "stream_entries": streams,
        "runs_kept": runs,
        "runs_dead_tuples": int(dead["runs"]),
        "task_runs_dead_tuples": int(dead["task_runs"]),
        "autovacuums": int(dead["autovacuums"]),
        "p99_ms": round(p99, 1),
        **sizes,
    }
