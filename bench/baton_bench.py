"""The Baton side: real ``baton api``, ``baton scheduler`` and ``baton worker`` processes.

Work goes in through the public API (signup, create job, trigger); results are read from
PostgreSQL as the owner role, inside each tenant's row-level-security scope.
Timestamps: ``runs.created_at`` is stamped by the API, ``task_runs.started_at`` and
``finished_at`` by the worker (its clock: the same machine).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from backend.core.settings import Settings
from bench.common import (
    BIN,
    BenchConfig,
    BenchError,
    JsonDict,
    cpu_per_task,
    latency_summary,
    reached,
    wait_until,
)
from bench.cpu import CpuMeter, postgres_backends, tree
from bench.procs import ProcessSet
from bench.profiling import PgSampler, Profiler
from bench.services import (
    FLUSHED,
    BenchDatabase,
    RedisRoles,
    Services,
    drop_redis_users,
    flush_redis,
    redis_intact,
    redis_pid,
    redis_url_as,
)

log = logging.getLogger("bench.baton")

NOOP_TASK = {"name": "noop", "type": "python", "function": "worker.builtins:noop"}
NOOP_JOB: dict[str, Any] = {"tasks": [NOOP_TASK]}
# Baton's own default BATON_TENANT_MAX_CONCURRENT_TASKS (latency and fairness keep it)
DEFAULT_QUOTA = int(Settings.model_fields["tenant_max_concurrent_tasks"].default)
WARMUP_TASKS = 20
IN_FLIGHT = 32  # open trigger requests at once (the API's DB pool is 10 + 10 overflow)
# What does Baton's work (CPU per task): every component but the benchmark's client.
BATON_SYSTEM = ("api", "scheduler", "workers", "postgres", "redis")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    name: str
    headers: dict[str, str]


_PROGRESS = """
SELECT count(*) AS tasks,
       count(*) FILTER (WHERE t.status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE t.status IN ('failed', 'cancelled', 'upstream_failed')) AS failed,
       count(t.started_at) AS started,
       count(*) FILTER (WHERE t.status = 'queued' AND t.started_at IS NULL) AS waiting,
       max(t.attempt) AS max_attempt,
       extract(epoch FROM min(t.started_at))::float8 AS first_started,
       extract(epoch FROM max(t.finished_at))::float8 AS last_finished,
       extract(epoch FROM max(r.finished_at))::float8 AS last_run_finished
  FROM task_runs t
  JOIN runs r ON r.tenant_id = t.tenant_id AND r.id = t.run_id
 WHERE t.tenant_id = $1 AND r.job_id = $2
"""
_REMAINING = """
SELECT count(*) FROM task_runs WHERE tenant_id = $1 AND status IN ('queued', 'running')
"""
_ATTEMPTS = """
SELECT count(*) AS attempts,
       count(DISTINCT a.task_run_id) AS distinct_tasks,
       count(*) FILTER (WHERE a.status = 'succeeded') AS succeeded
  FROM task_attempts a
  JOIN runs r ON r.tenant_id = a.tenant_id AND r.id = a.run_id
 WHERE a.tenant_id = $1 AND r.job_id = $2
"""
_RUNS_SUCCEEDED = """
SELECT count(*) FILTER (WHERE status = 'succeeded') FROM runs WHERE tenant_id = $1 AND job_id = $2
"""
_START_LATENCY = """
SELECT r.id AS run_id,
       extract(epoch FROM r.created_at)::float8 AS created,
       extract(epoch FROM t.started_at)::float8 AS started
  FROM runs r
  JOIN task_runs t ON t.tenant_id = r.tenant_id AND t.run_id = r.id
 WHERE r.tenant_id = $1 AND r.job_id = $2
"""
_DELAYED_START = """
SELECT extract(epoch FROM r.run_at)::float8 AS due,
       extract(epoch FROM r.created_at)::float8 AS created,
       extract(epoch FROM t.started_at)::float8 AS started
  FROM runs r
  JOIN task_runs t ON t.tenant_id = r.tenant_id AND t.run_id = r.id
 WHERE r.tenant_id = $1 AND r.job_id = $2
"""
_STARTED_BETWEEN = """
SELECT count(*) FROM task_runs t JOIN runs r ON r.tenant_id = t.tenant_id AND r.id = t.run_id
 WHERE t.tenant_id = $1 AND r.job_id = $2
   AND t.started_at >= to_timestamp($3) AND t.started_at < to_timestamp($4)
"""

_RETIRE_TASKS = """
UPDATE task_runs SET status = 'cancelled', reason = 'bench_cleanup', finished_at = now()
 WHERE tenant_id = $1 AND status IN ('pending', 'queued', 'running')
"""
_RETIRE_RUNS = """
UPDATE runs SET status = 'cancelled', reason = 'bench_cleanup', finished_at = now()
 WHERE tenant_id = $1 AND status IN ('queued', 'running')
"""


class Database:
    """Owner connection pool; every query runs in the tenant's RLS scope."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def fetch(self, tenant: Tenant, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant.id))
            return list(await conn.fetch(query, tenant.id, *args))

    async def fetchrow(self, tenant: Tenant, query: str, *args: Any) -> asyncpg.Record:
        rows = await self.fetch(tenant, query, *args)
        return rows[0]

    async def progress(self, tenant: Tenant, job_id: uuid.UUID) -> asyncpg.Record:
        return await self.fetchrow(tenant, _PROGRESS, job_id)

    async def retire(self, tenant: Tenant) -> int:
        """Mark the tenant's unfinished runs and task runs cancelled; how many task runs."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant.id))
            tasks = await conn.execute(_RETIRE_TASKS, tenant.id)
            await conn.execute(_RETIRE_RUNS, tenant.id)
        return int(tasks.split()[-1])

    async def remaining(self, tenant: Tenant) -> int:
        """The tenant's queued and running task runs (all jobs)."""
        return int((await self.fetchrow(tenant, _REMAINING))[0])


def start_workers(bench: BatonBench, procs: ProcessSet) -> None:
    """The benchmark's Baton workers (``worker-1``...), each ``baton worker`` on the default
    queue as the shared pool's Redis user."""
    for i in range(bench.cfg.workers):
        procs.start(
            f"worker-{i + 1}",
            [
                str(BIN / "baton"),
                "worker",
                "--queue",
                "default",
                "--concurrency",
                str(bench.cfg.concurrency),
            ],
            env={"BATON_REDIS_URL": bench.worker_redis_url},
        )


class Cluster:
    """One set of Baton processes (API, scheduler, workers) and an API client for it."""

    def __init__(self, bench: BatonBench, procs: ProcessSet, api_url: str) -> None:
        self.bench = bench
        self.procs = procs
        self.tenants: list[Tenant] = []  # signed up through this cluster
        self.client = httpx.AsyncClient(
            base_url=api_url,
            timeout=60.0,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def start_workers(self) -> None:
        start_workers(self.bench, self.procs)

    def pid(self, name: str) -> int:
        return self.procs.by_name(name)[0].pid

    async def cpu_meter(self) -> CpuMeter:
        """CPU accounting for Baton's processes, its PostgreSQL backends and Redis."""
        procs, database = self.procs, self.bench.database.name
        redis = await redis_pid(self.bench.services.baton_redis_url)
        return CpuMeter(
            {
                "api": lambda: [c.pid for c in procs.by_name("api")],
                "scheduler": lambda: [c.pid for c in procs.by_name("scheduler")],
                "workers": lambda: [p for c in procs.by_name("worker-") for p in tree(c.pid)],
                "postgres": lambda: postgres_backends(database),
                "redis": lambda: [redis] if redis else [],
            }
        )

    async def _post(self, path: str, tenant: Tenant | None, body: Any) -> Any:
        headers = tenant.headers if tenant else {}
        response = await self.client.post(path, json=body, headers=headers)
        if response.status_code >= 300:
            raise BenchError(f"POST {path} -> {response.status_code}: {response.text[:500]}")
        return response.json()

    async def signup(self, name: str) -> Tenant:
        body: dict[str, str] = {
            "email": f"{name}-{secrets.token_hex(4)}@bench.example.com",
            "password": secrets.token_urlsafe(16),
            "tenant_name": f"bench {name}",
        }
        data = await self._post("/api/v1/auth/signup", None, body)
        tenant = Tenant(
            id=uuid.UUID(data["tenant"]["id"]),
            name=name,
            headers={"Authorization": f"Bearer {data['access_token']}"},
        )
        self.tenants.append(tenant)
        return tenant

    async def create_job(
        self, tenant: Tenant, name: str, tasks: list[dict[str, Any]] | None = None
    ) -> uuid.UUID:
        """A job of ``tasks`` (default: the one no-op task)."""
        body = {"name": name, **NOOP_JOB} if tasks is None else {"name": name, "tasks": tasks}
        data = await self._post("/api/v1/jobs", tenant, body)
        return uuid.UUID(data["id"])

    async def trigger_batch(self, tenant: Tenant, job_id: uuid.UUID, count: int) -> list[str]:
        body: dict[str, Any] = {"runs": [{"params": {}} for _ in range(count)]}
        data = await self._post(f"/api/v1/jobs/{job_id}/runs/batch", tenant, body)
        if data["created"] != count:
            raise BenchError(f"batch created {data['created']} runs, not {count}")
        return [run["id"] for run in data["runs"]]

    async def trigger_one(
        self, tenant: Tenant, job_id: uuid.UUID, *, delay: float | None = None
    ) -> str:
        """One ``POST /runs``; with ``delay``, the run is due that many seconds from now
        (``run_at``, an absolute instant, so the time the request takes does not move it)."""
        body: dict[str, Any] = {"params": {}}
        if delay is not None:
            body["run_at"] = datetime.fromtimestamp(time.time() + delay, UTC).isoformat()
        data = await self._post(f"/api/v1/jobs/{job_id}/runs", tenant, body)
        return str(data["id"])

    async def enqueue(self, tenant: Tenant, job_id: uuid.UUID, total: int) -> list[float]:
        """Trigger ``total`` runs in batches; the seconds each batch request took."""
        took: list[float] = []
        size = self.bench.cfg.batch_size
        for start in range(0, total, size):
            began = time.perf_counter()
            await self.trigger_batch(tenant, job_id, min(size, total - start))
            took.append(time.perf_counter() - began)
            self.procs.check_alive()
        return took

    async def wait_done(
        self, tenant: Tenant, job_id: uuid.UUID, total: int, *, within: float, what: str
    ) -> asyncpg.Record:
        """Wait until the tenant has no queued or running task left (every run triggered
        so far is over); the job's final progress row.

        The poll is the cheap ``remaining`` query (the partial index of active tasks), so
        the benchmark's own polling adds little to PostgreSQL's load."""
        db = self.bench.db
        next_log = time.monotonic() + 10

        async def done() -> bool:
            nonlocal next_log
            self.procs.check_alive()
            remaining = await db.remaining(tenant)
            if time.monotonic() > next_log:
                next_log = time.monotonic() + 10
                log.info("%s: %d of %d tasks still queued or running", what, remaining, total)
            return remaining == 0

        await wait_until(done, within=within, interval=0.5, what=what)
        row = await db.progress(tenant, job_id)
        if row["succeeded"] + row["failed"] < total:
            raise BenchError(
                f"{what}: only {row['succeeded'] + row['failed']} of {total} "
                "tasks finished, yet none is queued or running"
            )
        return row

    async def open_loop(
        self, count: int, rate: float, fire: Callable[[], Awaitable[str]]
    ) -> list[tuple[str, float, float]]:
        """Call ``fire`` ``count`` times at ``rate``/s without waiting for answers (open
        loop); (run id, due at, answered at) per call, wall-clock epoch seconds.

        At most IN_FLIGHT requests are open at once (more would only queue inside the HTTP
        client, at a CPU cost the 2-core machine cannot spare); a call waiting for a slot
        still counts from the instant it was due, as an open-loop arrival should.
        """
        results: list[tuple[str, float, float]] = []
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def one() -> None:
            due = time.time()
            async with slots:
                run_id = await fire()
            results.append((run_id, due, time.time()))

        tasks: list[asyncio.Task[None]] = []
        began = time.perf_counter()
        for i in range(count):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        return results


class BatonBench:
    def __init__(
        self,
        cfg: BenchConfig,
        services: Services,
        database: BenchDatabase,
        log_dir: Path,
        db: Database,
    ) -> None:
        self.cfg = cfg
        self.services = services
        self.database = database
        self.log_dir = log_dir
        self.db = db
        self.jwt_secret = secrets.token_hex(32)
        # Production refuses the development keys of tenant secrets.
        self.secrets_kek = base64.b64encode(secrets.token_bytes(32)).decode()
        self.transit_key = base64.b64encode(secrets.token_bytes(32)).decode()
        # Production refuses an unauthenticated Redis: the API, the engine and the
        # migrations connect as the engine's ACL user, the workers as the shared pool's.
        self.redis_roles = RedisRoles.generate()
        admin = services.baton_redis_url
        self.engine_redis_url = redis_url_as(
            admin, self.redis_roles.engine_user, self.redis_roles.engine_password
        )
        self.worker_redis_url = redis_url_as(
            admin, self.redis_roles.worker_user, self.redis_roles.worker_password
        )

    def env(self, quota: int) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        return {
            **base,
            "BATON_ENVIRONMENT": "production",
            "BATON_DATABASE_URL": self.database.owner_url,
            "BATON_APP_DB_ROLE": self.database.app_role,
            "BATON_APP_DB_PASSWORD": self.database.app_password,
            "BATON_REDIS_URL": self.engine_redis_url,
            "BATON_JWT_SECRET": self.jwt_secret,
            "BATON_SECRETS_KEK": self.secrets_kek,
            "BATON_WORKER_TRANSIT_KEY": self.transit_key,
            "BATON_ACCESS_TOKEN_TTL_SECONDS": "7200",
            "BATON_ARGON2_TIME_COST": "1",  # only signups hash; keep them quick
            "BATON_ARGON2_MEMORY_COST": "8192",
            "BATON_TENANT_MAX_CONCURRENT_TASKS": str(quota),
            "BATON_HOST": "127.0.0.1",
            "BATON_PORT": str(_free_port()),
        }

    async def provision_redis(self) -> None:
        """``baton redis provision-acl`` as production runs it: as Redis's default user
        (the benchmark's unauthenticated URL), making the engine's and the workers' users."""
        env = {
            **self.env(DEFAULT_QUOTA),
            **self.redis_roles.provision_env(self.services.baton_redis_url),
        }
        procs = ProcessSet(self.log_dir, env)
        await asyncio.to_thread(
            procs.run,
            "baton-redis-provision-acl",
            [str(BIN / "baton"), "redis", "provision-acl"],
            timeout=60,
        )

    async def migrate(self) -> None:
        procs = ProcessSet(self.log_dir, self.env(DEFAULT_QUOTA))
        await asyncio.to_thread(
            procs.run, "baton-db-upgrade", [str(BIN / "baton"), "db", "upgrade"], timeout=180
        )

    @contextlib.asynccontextmanager
    async def cluster(
        self,
        name: str,
        *,
        quota: int,
        workers: bool = True,
        engine: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> AsyncIterator[Cluster]:
        await flush_redis(self.services.baton_redis_url)
        env = {**self.env(quota), **(extra_env or {})}
        out = self.log_dir / name
        out.mkdir(parents=True, exist_ok=True)
        procs = ProcessSet(out, env)
        cluster = Cluster(self, procs, f"http://127.0.0.1:{env['BATON_PORT']}")
        try:
            procs.start("api", [str(BIN / "baton"), "api"])
            if engine:
                procs.start("scheduler", [str(BIN / "baton"), "scheduler"])
            if workers:
                cluster.start_workers()

            async def ready() -> bool:
                procs.check_alive()
                try:
                    response = await cluster.client.get("/readyz")
                except httpx.HTTPError:
                    return False
                return response.status_code == 200

            await wait_until(ready, within=60, interval=0.2, what="baton api /readyz")
            yield cluster
            if not await redis_intact(self.services.baton_redis_url):
                raise BenchError(FLUSHED.format(url=self.services.baton_redis_url))
        except BaseException:
            procs.dump_tails()
            raise
        finally:
            await cluster.aclose()
            await asyncio.to_thread(procs.stop_all)
            await self._retire(cluster.tenants)

    async def _retire(self, tenants: list[Tenant]) -> None:
        """Cancel what a scenario left unfinished (fairness leaves most of tenant A's
        backlog queued), once its processes are gone: the next scenario's engine would
        otherwise re-dispatch it and run it alongside its own work."""
        for tenant in tenants:
            try:
                left = await self.db.retire(tenant)
            except Exception:  # cleanup must not hide the scenario's own outcome
                log.exception("could not cancel tenant %s's leftover work", tenant.name)
                continue
            if left:
                log.info("cancelled %d unfinished task runs of tenant %s", left, tenant.name)

    async def _report_profiles(
        self, cluster: Cluster, profiler: Profiler | None, sampler: PgSampler, scenario: str
    ) -> None:
        """Stop the py-spy recorders and the PostgreSQL sampler; log their summaries."""
        if profiler is None:
            return
        for name, summary in profiler.stop().items():
            log.info("py-spy profile of the %s (%s):\n%s", name, scenario, summary)
        pg_summary = await sampler.stop()
        (cluster.procs.log_dir / "profile-postgres-summary.txt").write_text(pg_summary)
        log.info("PostgreSQL (%s): %s", scenario, pg_summary)

    async def _warm(self, cluster: Cluster, tenant: Tenant) -> None:
        job = await cluster.create_job(tenant, "warmup")
        await cluster.trigger_batch(tenant, job, WARMUP_TASKS)
        await cluster.wait_done(tenant, job, WARMUP_TASKS, within=90, what="baton warm-up")

    async def _verify_once(
        self, tenant: Tenant, job_id: uuid.UUID, total: int, progress: asyncpg.Record
    ) -> JsonDict:
        attempts = await self.db.fetchrow(tenant, _ATTEMPTS, job_id)
        runs_ok = (await self.db.fetchrow(tenant, _RUNS_SUCCEEDED, job_id))[0]
        checks = {
            "task_runs_succeeded": int(progress["succeeded"]),
            "task_attempts": int(attempts["attempts"]),
            "task_attempts_succeeded": int(attempts["succeeded"]),
            "tasks_with_attempts": int(attempts["distinct_tasks"]),
            "max_attempt": int(progress["max_attempt"] or 0),
            "runs_succeeded": int(runs_ok),
        }
        ok = (
            checks["task_runs_succeeded"] == total
            and checks["task_attempts"] == total
            and checks["task_attempts_succeeded"] == total
            and checks["tasks_with_attempts"] == total
            and checks["max_attempt"] == 1
            and checks["runs_succeeded"] == total
        )
        return {"exactly_once": ok, "checks": checks}

    # -- scenarios --------------------------------------------------------------------
    async def throughput(self) -> JsonDict:
        total = self.cfg.throughput_tasks
        async with self.cluster("baton-throughput", quota=self.cfg.throughput_quota) as cluster:
            tenant = await cluster.signup("throughput")
            await self._warm(cluster, tenant)
            job = await cluster.create_job(tenant, "bench")
            profiler = Profiler(cluster.procs.log_dir) if self.cfg.profile else None
            sampler = PgSampler(self.database.asyncpg_dsn(), self.database.name)
            if profiler is not None:
                profiler.start("engine", cluster.pid("scheduler"))
                profiler.start("worker", cluster.pid("worker-1"))
                profiler.start("api", cluster.pid("api"))
                sampler.start()
            meter = await cluster.cpu_meter()
            meter.start()
            began = time.time()
            batch_took = await cluster.enqueue(tenant, job, total)
            enqueued = time.time() - began
            progress = await cluster.wait_done(
                tenant, job, total, within=120 + total / 25, what="baton throughput"
            )
            observed = time.time() - began
            cpu = meter.stop()
            await self._report_profiles(cluster, profiler, sampler, "throughput")
            verdict = await self._verify_once(tenant, job, total, progress)
        # The end: the engine has recorded the last run as succeeded (runs.finished_at);
        # the workers' own last finish (task_runs.finished_at) is reported beside it.
        elapsed = float(progress["last_run_finished"]) - began
        worker_elapsed = float(progress["last_finished"]) - began
        return {
            "tasks": total,
            "tasks_per_s": round(total / elapsed, 1),
            "seconds": round(elapsed, 2),
            "worker_done_seconds": round(worker_elapsed, 2),
            "enqueue_seconds": round(enqueued, 2),
            "enqueue_tasks_per_s": round(total / enqueued, 1),
            "batch_request_p50_ms": round(sorted(batch_took)[len(batch_took) // 2] * 1000, 1),
            "drain_observed_seconds": round(observed, 2),
            "failed": int(progress["failed"]),
            **verdict,
            "workers": self.cfg.workers,
            "concurrency": self.cfg.concurrency,
            "tenant_quota": self.cfg.throughput_quota,
            "cpu_seconds": cpu,
            **cpu_per_task(cpu, total, BATON_SYSTEM),
            "setup": f"{self.cfg.workers} baton worker + 1 scheduler + 1 api; "
            f"batches of {self.cfg.batch_size} via POST /runs/batch",
        }

    async def latency(self) -> JsonDict:
        total, rate = self.cfg.latency_tasks, self.cfg.latency_rate
        async with self.cluster("baton-latency", quota=DEFAULT_QUOTA) as cluster:
            tenant = await cluster.signup("latency")
            await self._warm(cluster, tenant)
            job = await cluster.create_job(tenant, "bench")
            await asyncio.sleep(2)  # idle, warm
            profiler = Profiler(cluster.procs.log_dir) if self.cfg.profile else None
            sampler = PgSampler(self.database.asyncpg_dsn(), self.database.name)
            if profiler is not None:
                profiler.start("api", cluster.pid("api"))
                profiler.start("engine", cluster.pid("scheduler"))
                sampler.start()
            meter = await cluster.cpu_meter()
            meter.start()
            began = time.perf_counter()
            sent = await cluster.open_loop(total, rate, lambda: cluster.trigger_one(tenant, job))
            sending = time.perf_counter() - began
            await self._report_profiles(cluster, profiler, sampler, "latency")
            await cluster.wait_done(
                tenant, job, total, within=120 + total / 20, what="baton latency"
            )
            cpu = meter.stop()
            rows = await self.db.fetch(tenant, _START_LATENCY, job)
            delayed = await self._delayed(cluster, tenant)
        started = {str(r["run_id"]): r for r in rows}
        server = [(r["started"] - r["created"]) * 1000 for r in rows]
        due = [(started[rid]["started"] - at) * 1000 for rid, at, _ in sent]
        answered = [(done - at) * 1000 for _, at, done in sent]
        return {
            "tasks": total,
            "target_rate_per_s": rate,
            "achieved_rate_per_s": round(total / sending, 1),
            **latency_summary(server),
            **latency_summary(due, "due_to_start_"),
            "trigger_request_p50_ms": round(sorted(answered)[len(answered) // 2], 1),
            **delayed,
            "measured": "runs.created_at (API) -> task_runs.started_at (worker)",
            "workers": self.cfg.workers,
            "concurrency": self.cfg.concurrency,
            "tenant_quota": DEFAULT_QUOTA,
            "cpu_seconds": cpu,
            **cpu_per_task(cpu, total, BATON_SYSTEM),
        }

    async def _delayed(self, cluster: Cluster, tenant: Tenant) -> JsonDict:
        """The latency scenario's second phase: runs triggered ``latency_delay_seconds``
        ahead of their ``run_at`` at the same rate, into the same idle cluster; due ->
        start = ``task_runs.started_at`` (worker) - ``runs.run_at`` (the instant asked
        for). A run whose trigger was answered after its instant (the API behind) is due
        at its creation instead (``run_at`` = max(asked, now)): counted in
        ``scheduled_late_triggers``, and its latency still counts from its ``run_at``."""
        total = max(10, self.cfg.latency_tasks // 4)
        job = await cluster.create_job(tenant, "delayed")
        await asyncio.sleep(1)  # idle again
        delay = self.cfg.latency_delay_seconds
        await cluster.open_loop(
            total, self.cfg.latency_rate, lambda: cluster.trigger_one(tenant, job, delay=delay)
        )
        await cluster.wait_done(
            tenant, job, total, within=120 + total / 20, what="baton delayed runs"
        )
        rows = await self.db.fetch(tenant, _DELAYED_START, job)
        values = [(r["started"] - r["due"]) * 1000 for r in rows if r["started"] is not None]
        late = sum(1 for r in rows if r["due"] <= r["created"])
        return {
            "delayed_tasks": total,
            "delayed_by_s": delay,
            "scheduled_late_triggers": late,
            **latency_summary(values, "scheduled_due_to_start_"),
        }

    async def fairness(self) -> JsonDict:
        backlog, probes = self.cfg.fairness_backlog, self.cfg.fairness_probe_tasks
        async with self.cluster("baton-fairness", quota=DEFAULT_QUOTA, workers=False) as cluster:
            a = await cluster.signup("tenant-a")
            b = await cluster.signup("tenant-b")
            job_a = await cluster.create_job(a, "bulk")
            job_b = await cluster.create_job(b, "probe")
            began = time.perf_counter()
            await cluster.enqueue(a, job_a, backlog)
            enqueue_seconds = time.perf_counter() - began
            # Workers start only now, so tenant A really has its whole backlog queued.
            cluster.start_workers()
            warm = self.cfg.workers * self.cfg.concurrency

            async def a_running() -> bool:
                cluster.procs.check_alive()
                return await self.db.remaining(a) <= backlog - warm

            await wait_until(a_running, within=90, interval=0.25, what="tenant A's first tasks")
            a_before = await self.db.progress(a, job_a)
            profiler = Profiler(cluster.procs.log_dir) if self.cfg.profile else None
            sampler = PgSampler(self.database.asyncpg_dsn(), self.database.name)
            if profiler is not None:
                profiler.start("engine", cluster.pid("scheduler"))
                profiler.start("worker", cluster.pid("worker-1"))
                sampler.start()
            meter = await cluster.cpu_meter()
            meter.start()
            probe_began = time.time()
            await cluster.open_loop(
                probes,
                probes / self.cfg.fairness_probe_seconds,
                lambda: cluster.trigger_one(b, job_b),
            )

            async def b_started() -> bool:
                cluster.procs.check_alive()
                return bool((await self.db.progress(b, job_b))["started"] >= probes)

            timed_out = not await reached(
                b_started,
                within=self.cfg.fairness_wait_seconds,
                interval=0.5,
                what="tenant B's tasks to start",
            )
            window_end = time.time()
            cpu = meter.stop()
            await self._report_profiles(cluster, profiler, sampler, "fairness")
            rows = await self.db.fetch(b, _START_LATENCY, job_b)
            a_during = (
                await self.db.fetchrow(a, _STARTED_BETWEEN, job_a, probe_began, window_end)
            )[0]
        latencies = [(r["started"] - r["created"]) * 1000 for r in rows if r["started"] is not None]
        return {
            "a_backlog": backlog,
            "a_waiting_at_b_start": int(a_before["waiting"]),
            "a_enqueue_seconds": round(enqueue_seconds, 1),
            "b_tasks": probes,
            "b_started": len(latencies),
            "b_timed_out": timed_out,
            **latency_summary(latencies, "b_"),
            "a_tasks_per_s_meanwhile": round(a_during / max(window_end - probe_began, 1e-6), 1),
            "measured": "tenant B: runs.created_at -> task_runs.started_at",
            "workers": self.cfg.workers,
            "concurrency": self.cfg.concurrency,
            "tenant_quota": DEFAULT_QUOTA,
            "cpu_seconds": cpu,
            **cpu_per_task(cpu, int(a_during) + len(latencies), BATON_SYSTEM),
        }

    async def trigger_rate(self) -> JsonDict:
        from bench.trigger_rate import trigger_rate

        return await trigger_rate(self)

    async def soak(self) -> JsonDict:
        from bench.soak import soak

        return await soak(self)

    # The DAG-engine scenarios live in bench.baton_dag (imported late: it imports this).
    async def chain40(self) -> JsonDict:
        from bench.baton_dag import chain40

        return await chain40(self)

    async def fanout500(self) -> JsonDict:
        from bench.baton_dag import fanout500

        return await fanout500(self)

    async def dag1000(self) -> JsonDict:
        from bench.baton_dag import dag1000

        return await dag1000(self)

    # The cron-scheduler scenarios live in bench.baton_sched.
    async def schedules10k(self) -> JsonDict:
        from bench.baton_sched import schedules10k

        return await schedules10k(self)

    async def scheduler_failover(self) -> JsonDict:
        from bench.baton_sched import scheduler_failover

        return await scheduler_failover(self)

    async def schedules100k(self) -> JsonDict:
        from bench.baton_sched import schedules100k

        return await schedules100k(self)


@contextlib.asynccontextmanager
async def baton_bench(
    cfg: BenchConfig, services: Services, database: BenchDatabase, log_dir: Path
) -> AsyncIterator[BatonBench]:
    pool = await asyncpg.create_pool(database.asyncpg_dsn(), min_size=1, max_size=4)
    try:
        bench = BatonBench(cfg, services, database, log_dir, Database(pool))
        try:
            await bench.provision_redis()
            await bench.migrate()
            yield bench
        finally:  # ACL users are server-wide: leave none behind
            await drop_redis_users(services.baton_redis_url, bench.redis_roles.users)
    finally:
        await pool.close()
