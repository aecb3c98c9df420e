"""Baton's cron-scheduler scenarios: schedules10k, scheduler_failover and schedules100k.

Schedules are created in-process through the real services - ``auth.service.signup`` for
each tenant, then ``jobs.service.create_job`` for each job with a ``schedule:`` section
(which writes the schedule row and announces it in Redis after the commit) - one
transaction per tenant, a few tenants at once, in the run's throw-away database. The
scheduler under test runs as subprocesses of its own (``python -m bench.scheduler_proc``:
the cron scheduler as ``baton scheduler`` builds it, without the engine), so its CPU time
is its own. In schedules10k the fired runs are executed, as the issue's scenario has it:
the engine (``python -m bench.engine_proc``: ``baton scheduler`` without its cron
scheduler) and the benchmark's workers run as a process set of their own, measured apart
(``BATON_BENCH_SCHEDULE_EXECUTE=0``: no engine and no workers, a fire is then a run row
left queued). scheduler_failover and schedules100k run the replicas alone.

Lateness is ``runs.created_at`` (stamped by the scheduler when it inserts the run) minus
``runs.scheduled_for`` (the cron instant). Every schedule gets ``start_at``/``end_at`` so
exactly the instants of the measured window are due; the expected fires are therefore
known exactly, and every one is checked in PostgreSQL after the scheduler has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from backend.core.settings import Settings
from bench.common import BenchError, JsonDict, latency_summary, reached, rounded, wait_until
from bench.cpu import CpuMeter, Pids, postgres_backends, tree
from bench.procs import Child, ProcessSet
from bench.profiling import Profiler
from bench.services import FLUSHED, flush_redis, redis_intact, redis_pid
from kernel.wire import keys
from kernel.wire.streams import as_text

if TYPE_CHECKING:
    from bench.baton_bench import BatonBench, Tenant

log = logging.getLogger("bench.baton.sched")

NOOP_TASK = {"name": "noop", "type": "python", "function": "worker.builtins:noop"}
EVERY_MINUTE = "* * * * *"
EVERY_5_SECONDS = "* * * * * */5"  # six fields: the last one is seconds
SEED_CONCURRENCY = 4  # tenants created at once (one transaction each)
# Schedules created per second by each seeding of this run (schedules100k's estimate of
# how long its own will take, when schedules10k ran before it).
SEED_RATES: list[float] = []
DEFAULT_LEASE = float(Settings.model_fields["scheduler_lease_seconds"].default)
# Scheduler settings the replicas take from the benchmark's own environment when set.
PASSED_THROUGH = (
    "BATON_SCHEDULER_LEASE_SECONDS",
    "BATON_SCHEDULER_POLL_SECONDS",
    "BATON_SCHEDULER_AHEAD_SECONDS",
    "BATON_SCHEDULER_CONCURRENCY",
    "BATON_SCHEDULER_TENANTS_PER_TRANSACTION",
    "BATON_DB_POOL_SIZE",
)

# Fired runs (a fire prepared ahead, ``planned``, is not one yet); ``created_at`` of a
# prepared one is its hand-over to admission.
_RUNS = """
SELECT id, job_id, extract(epoch FROM scheduled_for)::float8 AS due,
       extract(epoch FROM created_at)::float8 AS created
  FROM runs WHERE tenant_id = $1 AND trigger = 'schedule' AND status <> 'planned'
"""
_TICKS = """
SELECT job_id, extract(epoch FROM scheduled_for)::float8 AS due, outcome,
       run_id IS NOT NULL AS has_run, reason
  FROM schedule_ticks WHERE tenant_id = $1
"""
# schedules10k with execution: how many fired runs have succeeded, and each task's start
# after its run became admissible (created, or handed over when prepared ahead; released
# ahead: its start time, the later of the two).
_EXECUTED = """
SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded, count(*) AS runs
  FROM runs WHERE tenant_id = $1 AND trigger = 'schedule' AND status <> 'planned'
"""
_START_DELAYS = """
SELECT extract(epoch FROM t.started_at - greatest(r.created_at, r.run_at))::float8 AS delay,
       extract(epoch FROM t.dispatched_at - greatest(r.created_at, r.run_at))::float8
           AS dispatch
  FROM runs r JOIN task_runs t ON t.tenant_id = r.tenant_id AND t.run_id = r.id
 WHERE r.tenant_id = $1 AND r.trigger = 'schedule' AND r.status <> 'planned'
   AND t.started_at IS NOT NULL
"""
_DUPLICATE_RUNS = """
SELECT count(*) FROM (
  SELECT 1 FROM runs WHERE tenant_id = $1 AND trigger = 'schedule' AND status <> 'planned'
   GROUP BY job_id, scheduled_for HAVING count(*) > 1) d
"""


def lateness_summary(seconds: list[float], prefix: str = "lateness_") -> JsonDict:
    """p50/p95/p99/max/mean of lateness in ms (as the other scenarios report latencies),
    and p50/p99/max in seconds (the results table's unit)."""
    summary: JsonDict = latency_summary([v * 1000 for v in seconds], prefix)
    for key in ("p50", "p99", "max"):
        if f"{prefix}{key}_ms" in summary:
            summary[f"{prefix}{key}_s"] = round(summary[f"{prefix}{key}_ms"] / 1000, 2)
    return summary


def lease_seconds() -> float:
    raw = os.environ.get("BATON_SCHEDULER_LEASE_SECONDS", "").strip()
    return float(raw) if raw else DEFAULT_LEASE


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _ceil(epoch: float, step: float) -> float:
    return math.ceil(epoch / step) * step


# --------------------------------------------------------------------------- seeding
@dataclass
class Seeded:
    tenants: list[Tenant]
    jobs: dict[uuid.UUID, list[uuid.UUID]]  # tenant id -> its jobs
    seconds: float

    @property
    def schedules(self) -> int:
        return sum(len(v) for v in self.jobs.values())


def seed_settings(bench: BatonBench) -> Settings:
    """The settings the services need in this process (the replicas get the same)."""
    env = bench.env(1)
    return Settings(
        _env_file=None,
        environment="production",
        database_url=env["BATON_DATABASE_URL"],
        app_db_role=env["BATON_APP_DB_ROLE"],
        app_db_password=env["BATON_APP_DB_PASSWORD"],
        redis_url=env["BATON_REDIS_URL"],
        jwt_secret=env["BATON_JWT_SECRET"],
        secrets_kek=env["BATON_SECRETS_KEK"],
        worker_transit_key=env["BATON_WORKER_TRANSIT_KEY"],
        argon2_time_cost=1,
        argon2_memory_cost=8192,
    )


async def seed_and_start(
    bench: BatonBench,
    group: Replicas,
    *,
    tenants: int,
    per_tenant: int,
    window: dict[str, Any],
    label: str,
    before: float,
    lead_knob: str,
) -> tuple[Seeded, float]:
    """Seed the schedules, then start the scheduler replica; the seed and how long the
    replica took to start. Both must be done 2 s before ``before`` (the first
    measured instant), or the scenario is refused with the knob that gives more lead."""
    seeded = await seed(bench, tenants=tenants, per_tenant=per_tenant, schedule=window, label=label)
    log.info(
        "created %d schedules in %.1f s (%.0f/s)",
        seeded.schedules,
        seeded.seconds,
        seeded.schedules / seeded.seconds,
    )
    began = time.time()
    group.start("scheduler")
    ready = await group.wait_ready("scheduler", within=max(60.0, before - time.time()))
    startup = ready - began
    if ready > before - 2:
        raise BenchError(
            f"creating the schedules ({seeded.seconds:.0f} s) and starting the scheduler "
            f"({startup:.0f} s) overran the first instant; raise {lead_knob}"
        )
    return seeded, startup


async def seed(
    bench: BatonBench, *, tenants: int, per_tenant: int, schedule: dict[str, Any], label: str
) -> Seeded:
    """Sign up ``tenants`` tenants and give each ``per_tenant`` scheduled no-op jobs,
    through the services the API uses (one transaction per tenant; the jobs created
    together, as a GitOps apply creates them)."""
    from backend import wiring  # noqa: F401  (jobs.service fires hooks wired there)
    from backend.auth import service as auth_service
    from backend.core.db import commit, create_engine, create_sessionmaker
    from backend.core.permissions import Role
    from backend.core.principal import Principal, RequestOrigin
    from backend.jobs import service as jobs_service
    from backend.jobs.spec import JobSpec
    from bench.baton_bench import Tenant
    from kernel.runtime.redis import create_redis

    settings = seed_settings(bench)
    engine = create_engine(settings.owner_database_url(), pool_size=SEED_CONCURRENCY)
    sessionmaker = create_sessionmaker(engine)
    redis = create_redis(settings.redis_url or "")
    slots = asyncio.Semaphore(SEED_CONCURRENCY)
    made: list[Tenant] = []
    jobs: dict[uuid.UUID, list[uuid.UUID]] = {}
    specs = [
        JobSpec.model_validate(
            {"name": f"every-{j:03d}", "tasks": [NOOP_TASK], "schedule": schedule}
        )
        for j in range(per_tenant)
    ]

    async def one(i: int) -> None:
        origin = RequestOrigin(user_agent="baton-bench")
        async with slots, sessionmaker() as session:
            result = await auth_service.signup(
                session,
                settings,
                email=f"{label}-{i}-{secrets.token_hex(3)}@bench.example.com",
                password=secrets.token_urlsafe(16),
                tenant_name=f"{label} {i:04d}",
                origin=origin,
            )
            principal = Principal(
                user_id=result.user.id,
                email=result.user.email,
                tenant_id=result.tenant.id,
                role=Role.owner,
                is_superuser=False,
                origin=origin,
            )
            ids = [
                job.id for job in await jobs_service.create_jobs(session, redis, principal, specs)
            ]
            await commit(session)
        made.append(Tenant(id=result.tenant.id, name=f"{label}-{i}", headers={}))
        jobs[result.tenant.id] = ids

    began = time.monotonic()
    try:
        await asyncio.gather(*(one(i) for i in range(tenants)))
    finally:
        await redis.aclose()
        await engine.dispose()
    made.sort(key=lambda t: t.name)
    SEED_RATES.append(tenants * per_tenant / max(time.monotonic() - began, 1e-3))
    return Seeded(tenants=made, jobs=jobs, seconds=time.monotonic() - began)


# --------------------------------------------------------------------------- replicas
@dataclass
class LogTail:
    """Reads a replica's JSON log as it grows: its ``scheduler.fired`` events."""

    path: Path
    offset: int = 0
    # (at, tenant, n): fires a pass dealt with at their instant (made admissible, or
    # released ahead and recorded now)
    fired: list[tuple[float, str, int]] = field(default_factory=list)
    # (at, tenant, n): fires made admissible by the commit the line follows
    admitted: list[tuple[float, str, int]] = field(default_factory=list)
    # (at, tenant, {instant: n}): fires released ahead by the commit the line follows
    released: list[tuple[float, str, dict[str, int]]] = field(default_factory=list)
    ticks: int = 0  # instants accounted for: fired + skipped + missed
    counts: Counter[str] = field(default_factory=Counter)  # events by name
    _partial: bytes = b""

    def poll(self) -> None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if not isinstance(event, dict):
                    continue
                name = str(event.get("event", ""))
                self.counts[name] += 1
                if name == "scheduler.fired":
                    at = datetime.fromisoformat(str(event["timestamp"])).timestamp()
                    tenant = str(event["tenant_id"])
                    fired = int(event["fired"])
                    recorded = int(event.get("recorded") or 0)
                    self.fired.append((at, tenant, fired + recorded))
                    self.admitted.append((at, tenant, fired))
                    if event.get("released_for"):
                        instants = {str(k): int(v) for k, v in event["released_for"].items()}
                        self.released.append((at, tenant, instants))
                    self.ticks += recorded + sum(
                        int(event.get(k) or 0) for k in ("fired", "skipped", "missed")
                    )

    @property
    def total_fired(self) -> int:
        return sum(n for _, _, n in self.fired)


@dataclass
class Replica:
    name: str
    child: Child
    log: LogTail
    started: float  # epoch seconds


class Replicas:
    """Scheduler replicas (``bench.scheduler_proc``) of one scenario."""

    def __init__(self, bench: BatonBench, out: Path) -> None:
        self.bench = bench
        env = bench.env(1)
        for name in PASSED_THROUGH:
            if os.environ.get(name, "").strip():
                env[name] = os.environ[name].strip()
        self.procs = ProcessSet(out, env)
        # The engine and workers that run what the replicas fire (schedules10k), apart
        # from the replicas so that the scheduler's CPU is measured alone.
        self.execution: ProcessSet | None = None
        self.replicas: dict[str, Replica] = {}
        self.redis: Redis = Redis.from_url(bench.services.baton_redis_url, decode_responses=True)

    def start(self, name: str) -> Replica:
        child = self.procs.start(
            name,
            [sys.executable, "-m", "bench.scheduler_proc"],
            env={"BATON_BENCH_SCHEDULER_NAME": name},
        )
        replica = Replica(name, child, LogTail(child.log_path), time.time())
        self.replicas[name] = replica
        return replica

    def start_execution(self) -> None:
        """The engine (``bench.engine_proc``: ``baton scheduler`` without its cron
        scheduler) and the benchmark's workers (``baton worker``), running the fired runs."""
        from bench.baton_bench import DEFAULT_QUOTA, start_workers

        bench = self.bench
        env = bench.env(DEFAULT_QUOTA)
        self.execution = ProcessSet(self.procs.log_dir / "execution", env)
        self.execution.log_dir.mkdir(parents=True, exist_ok=True)
        self.execution.start("engine", [sys.executable, "-m", "bench.engine_proc"])
        start_workers(bench, self.execution)

    def check_alive(self) -> None:
        self.procs.check_alive()
        if self.execution is not None:
            self.execution.check_alive()

    def kill(self, name: str) -> float:
        """SIGKILL a replica (no clean-up: its leases stay until they expire); when."""
        replica = self.replicas[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(replica.child.pid, signal.SIGKILL)
        at = time.time()
        replica.child.process.wait(10)
        replica.child.expect_exit = True  # check_alive must not count it as a failure
        return at

    async def heartbeat(self, name: str) -> float | None:
        score = await self.redis.zscore(keys.scheduler_replicas(), name)
        return float(score) if score is not None else None

    async def wait_ready(self, name: str, *, within: float) -> float:
        """Until the replica's first pass (its first heartbeat: the due index is rebuilt);
        the epoch second it was seen."""

        async def ready() -> bool:
            self.procs.check_alive()
            return await self.heartbeat(name) is not None

        await wait_until(ready, within=within, interval=0.1, what=f"scheduler {name} to start")
        return time.time()

    async def holders(self, tenants: Iterable[uuid.UUID]) -> dict[uuid.UUID, str | None]:
        """Which replica holds each tenant's lease now."""
        ids = list(tenants)
        values = await self.redis.mget([keys.scheduler_lease(str(t)) for t in ids])
        return {
            t: (as_text(v).rsplit(" ", 1)[0] if v else None)
            for t, v in zip(ids, values, strict=True)
        }

    def poll_logs(self) -> None:
        for replica in self.replicas.values():
            replica.log.poll()

    def fired(self) -> int:
        self.poll_logs()
        return sum(r.log.total_fired for r in self.replicas.values())

    def ticks(self) -> int:
        """Instants the replicas have dealt with (fired, skipped or missed), per their logs."""
        self.poll_logs()
        return sum(r.log.ticks for r in self.replicas.values())

    async def cpu_meter(self) -> CpuMeter:
        database = self.bench.database.name
        redis = await redis_pid(self.bench.services.baton_redis_url)
        procs, execution = self.procs, self.execution
        groups: dict[str, Pids] = {
            "scheduler": lambda: [c.pid for c in procs.children if c.process.poll() is None],
            "postgres": lambda: postgres_backends(database),
            "redis": lambda: [redis] if redis else [],
        }
        if execution is not None:
            groups["engine"] = lambda: [c.pid for c in execution.by_name("engine")]
            groups["workers"] = lambda: [
                p for c in execution.by_name("worker-") for p in tree(c.pid)
            ]
        return CpuMeter(groups)

    async def aclose(self) -> None:
        if self.execution is not None:
            await asyncio.to_thread(self.execution.stop_all)
        await asyncio.to_thread(self.procs.stop_all)
        self.poll_logs()
        await self.redis.aclose()


@contextlib.asynccontextmanager
async def replicas(bench: BatonBench, name: str) -> AsyncIterator[Replicas]:
    """A flushed Redis database and a place for scheduler replicas; all stopped at exit."""
    await flush_redis(bench.services.baton_redis_url)
    out = bench.log_dir / name
    out.mkdir(parents=True, exist_ok=True)
    group = Replicas(bench, out)
    try:
        yield group
        if not await redis_intact(bench.services.baton_redis_url):
            raise BenchError(FLUSHED.format(url=bench.services.baton_redis_url))
    except BaseException:
        group.procs.dump_tails()
        raise
    finally:
        await group.aclose()


# --------------------------------------------------------------------------- checking
@dataclass
class Ledger:
    """What PostgreSQL holds after the run: runs and ticks per (job, instant)."""

    runs: dict[tuple[uuid.UUID, int], list[float]] = field(default_factory=dict)  # created
    # when each run was inserted (its uuid7 id's milliseconds): before the instant for a
    # fire prepared ahead, else the same as created
    made: dict[tuple[uuid.UUID, int], float] = field(default_factory=dict)
    ticks: dict[tuple[uuid.UUID, int], tuple[str, bool]] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)  # "outcome: reason", not fired
    duplicate_groups: int = 0

    @classmethod
    async def read(cls, bench: BatonBench, tenants: list[Tenant]) -> Ledger:
        ledger = cls()
        for tenant in tenants:
            for row in await bench.db.fetch(tenant, _RUNS):
                key = (row["job_id"], round(row["due"]))
                ledger.runs.setdefault(key, []).append(float(row["created"]))
                made = _uuid7_seconds(row["id"])
                ledger.made[key] = min(ledger.made.get(key, made), made)
            for row in await bench.db.fetch(tenant, _TICKS):
                ledger.ticks[(row["job_id"], round(row["due"]))] = (
                    row["outcome"],
                    bool(row["has_run"]),
                )
                if row["outcome"] != "fired" or row["reason"]:
                    ledger.reasons[f"{row['outcome']}: {row['reason']}"] += 1
            ledger.duplicate_groups += int((await bench.db.fetchrow(tenant, _DUPLICATE_RUNS))[0])
        return ledger

    def check(self, expected: set[tuple[uuid.UUID, int]]) -> JsonDict:
        """Fires lost (an expected instant without a run), duplicated (an instant with more
        than one run), unexpected (a run for an instant outside the window), and what the
        tick ledger says about each expected instant."""
        fired = set(self.runs)
        outcomes = Counter(self.ticks[k][0] for k in expected if k in self.ticks)
        return {
            "fires_expected": len(expected),
            "fires": sum(len(v) for k, v in self.runs.items() if k in expected),
            "fires_lost": len(expected - fired),
            "fires_duplicated": sum(len(v) - 1 for v in self.runs.values() if len(v) > 1),
            "duplicate_groups_sql": self.duplicate_groups,
            "fires_unexpected": len(fired - expected),
            "instants_without_tick": sum(1 for k in expected if k not in self.ticks),
            "ticks_fired_without_run": sum(
                1 for k in expected if self.ticks.get(k, ("", True)) == ("fired", False)
            ),
            "tick_outcomes": dict(outcomes),
            "tick_reasons": dict(self.reasons),
        }

    def lateness(self, keys_: Iterable[tuple[uuid.UUID, int]]) -> list[float]:
        """Seconds from each instant to its run's creation (the first run, if several)."""
        return [min(self.runs[k]) - k[1] for k in keys_ if k in self.runs]


def _uuid7_seconds(value: uuid.UUID | str) -> float:
    """The Unix time in a uuid7 id (its first 48 bits: milliseconds)."""
    return (uuid.UUID(str(value)).int >> 80) / 1000


def expected_fires(
    jobs: dict[uuid.UUID, list[uuid.UUID]], instants: list[int]
) -> set[tuple[uuid.UUID, int]]:
    return {(job, at) for ids in jobs.values() for job in ids for at in instants}


def by_tenant_quarter(
    ledger: Ledger,
    jobs: dict[uuid.UUID, list[uuid.UUID]],
    instants: list[int],
    committed: dict[str, list[float]] | None = None,
) -> list[JsonDict]:
    """Who pays when the scheduler falls behind: tenants in quarters of their id's text
    order (the order Redis returns tenants with equal due scores in). ``committed``: each
    tenant's lateness to the commits that made its fires admissible (:func:`committed_lateness`)."""
    quarters: list[JsonDict] = []
    ordered = sorted(jobs, key=str)
    size = math.ceil(len(ordered) / 4)
    for q in range(4):
        tenants = ordered[q * size : (q + 1) * size]
        keys_ = [(job, at) for t in tenants for job in jobs[t] for at in instants]
        stamped = ledger.lateness(keys_)
        quarter: JsonDict = {"lost": sum(1 for k in keys_ if k not in ledger.runs)}
        if committed is None:
            quarter["lateness_p50_s"] = _median_s(stamped)
        else:
            late = [v for t in tenants for v in committed.get(str(t), [])]
            quarter["lateness_p50_s"] = _median_s(late)
            quarter["stamped_p50_s"] = _median_s(stamped)
        quarters.append(quarter)
    return quarters


def _median_s(seconds: list[float]) -> float | None:
    return rounded(statistics.median(seconds), 1) if seconds else None


def committed_lateness(
    passes: list[tuple[float, str, int]],
    instants: list[int],
    released: list[tuple[float, str, dict[str, int]]] = (),  # type: ignore[assignment]
) -> tuple[dict[int, list[float]], dict[str, list[float]]]:
    """Each fire's lateness to the moment it became admissible, by instant and by tenant.

    A fire made admissible at its instant (inserted, or handed over): the scheduler logs a
    tenant's fires (``scheduler.fired``) after their commit, so that line's time - the
    latest instant not after it, once per fire it reports. ``runs.created_at`` is earlier:
    the pass's clock reading at the start of its transaction, which holds several tenants.
    A fire released ahead is admissible at its instant by the clock, or at the commit that
    released it if that came later: max(0, that line's time - its instant)."""
    by_instant: dict[int, list[float]] = {at: [] for at in instants}
    by_tenant: dict[str, list[float]] = {}
    for logged, tenant, fired in passes:
        at = max((i for i in instants if i <= logged), default=None)
        if at is None or fired <= 0:
            continue
        late = [logged - at] * fired
        by_instant[at].extend(late)
        by_tenant.setdefault(tenant, []).extend(late)
    for logged, tenant, counts in released:
        for instant, count in counts.items():
            at = round(datetime.fromisoformat(instant).timestamp())
            if at not in by_instant:
                continue
            late = [max(logged - at, 0.0)] * count
            by_instant[at].extend(late)
            by_tenant.setdefault(tenant, []).extend(late)
    return by_instant, by_tenant


# --------------------------------------------------------------------------- schedules10k
def schedules_minutes(scale: float) -> int:
    """How many full minutes schedules10k fires over: 2 at full size, 1 at scale <= 0.5."""
    raw = os.environ.get("BATON_BENCH_SCHEDULE_MINUTES", "").strip()
    if raw:
        return max(1, int(raw))
    return 2 if scale > 0.5 else 1


async def schedules10k(bench: BatonBench) -> JsonDict:
    cfg = bench.cfg
    tenants, per_tenant = cfg.schedule_tenants, cfg.schedules_per_tenant
    total = tenants * per_tenant
    minutes = schedules_minutes(cfg.scale)
    # The first measured instant leaves time to create the schedules and start the
    # scheduler (its start-up rebuilds the due index from every tenant's schedules).
    lead = cfg.schedule_lead_seconds or 20 + total * cfg.seed_seconds_per_schedule
    first = _ceil(time.time() + lead, 60)
    instants = [int(first + 60 * i) for i in range(minutes + 1)]
    window = {"cron": EVERY_MINUTE, "start_at": _iso(instants[0]), "end_at": _iso(instants[-1])}
    async with replicas(bench, "baton-schedules10k") as group:
        log.info(
            "creating %d schedules over %d tenants (fire at %s)",
            total,
            tenants,
            ", ".join(_iso(i)[11:19] for i in instants),
        )
        seeded, startup = await seed_and_start(
            bench,
            group,
            tenants=tenants,
            per_tenant=per_tenant,
            window=window,
            label="sched",
            before=instants[0],
            lead_knob="BATON_BENCH_SCHEDULE_LEAD",
        )
        execute = os.environ.get("BATON_BENCH_SCHEDULE_EXECUTE", "1").strip() != "0"
        if execute:
            group.start_execution()
        await asyncio.sleep(max(0.0, instants[0] - 2 - time.time()))
        meter = await group.cpu_meter()
        meter.start()
        profiler = Profiler(group.procs.log_dir) if cfg.profile else None
        if profiler is not None:
            profiler.start("scheduler", group.replicas["scheduler"].child.pid)
        expected = total * len(instants)
        deadline = instants[-1] + cfg.schedule_wait_seconds
        next_log = time.monotonic() + 15

        async def caught_up() -> bool:
            nonlocal next_log
            group.check_alive()
            ticks = group.ticks()
            if time.monotonic() > next_log:
                next_log = time.monotonic() + 15
                log.info(
                    "schedules10k: %d of %d instants dealt with (%d fired)",
                    ticks,
                    expected,
                    group.fired(),
                )
            return ticks >= expected

        timed_out = not await reached(
            caught_up,
            within=deadline - time.time(),
            interval=0.5,
            what="the scheduler to deal with every instant",
        )
        cpu = meter.stop()
        if profiler is not None:
            for name, summary in profiler.stop().items():
                log.info("py-spy profile of the %s (schedules10k):\n%s", name, summary)
        passes = group.replicas["scheduler"].log.admitted
        released = group.replicas["scheduler"].log.released
        dealt = group.replicas["scheduler"].log.fired
        last_pass = max((at for at, _, _ in dealt), default=time.time())
        log_counts = dict(group.replicas["scheduler"].log.counts)
        executed = await _executed(bench, group, seeded.tenants, deadline) if execute else {}
    ledger = await Ledger.read(bench, seeded.tenants)
    want = expected_fires(seeded.jobs, instants)
    checks = ledger.check(want)
    stamped = ledger.lateness(want)
    committed, committed_by_tenant = committed_lateness(passes, instants, released)
    late = [v for values in committed.values() for v in values]
    per_instant = []
    for at in instants:
        values = committed[at]
        stamps = ledger.lateness(k for k in want if k[1] == at)
        per_instant.append(
            {
                "instant": _iso(at)[11:19],
                "fires": len(stamps),
                "last_fire_s": rounded(max(values), 2) if values else None,
                "last_stamped_s": rounded(max(stamps), 2) if stamps else None,
            }
        )
    fires = checks["fires"]
    quarters = by_tenant_quarter(ledger, seeded.jobs, instants, committed_by_tenant)
    return {
        "schedules": total,
        "tenants": tenants,
        "cron": EVERY_MINUTE,
        "minutes": minutes,
        **checks,
        "all_fired": checks["fires_lost"] == 0 and not timed_out,
        "caught_up": not timed_out,
        "caught_up_after_last_instant_s": rounded(last_pass - instants[-1], 1),
        **lateness_summary(late),
        **lateness_summary(stamped, "stamped_"),
        "per_instant": per_instant,
        "by_tenant_quarter": quarters,
        "scheduler_cpu_s": cpu["scheduler"],
        "scheduler_cpu_ms_per_fire": rounded(cpu["scheduler"] * 1000 / max(fires, 1), 2),
        "postgres_cpu_ms_per_fire": rounded(cpu["postgres"] * 1000 / max(fires, 1), 2),
        "system_cpu_ms_per_fire": rounded(
            (cpu["scheduler"] + cpu["postgres"] + cpu["redis"]) * 1000 / max(fires, 1), 2
        ),
        "seed_seconds": rounded(seeded.seconds),
        "seed_schedules_per_s": rounded(seeded.schedules / seeded.seconds),
        "startup_seconds": rounded(startup, 2),
        "log_events": {k: v for k, v in log_counts.items() if k.startswith("scheduler.")},
        **executed,
        "measured": "lateness: when each fire became admissible - its instant: a fire "
        "released ahead, max(its instant, the commit that released it); one handed over or "
        "inserted at its instant, that commit (the scheduler.fired log line written after "
        "it); stamped_*: runs.created_at (the pass's clock reading at the start of its "
        "transaction; a released fire's is its preparation, so negative) - "
        "runs.scheduled_for; CPU of the scheduler process from 2 s before the first instant "
        "to the last fire",
        "cpu_seconds": cpu,
        "setup": "1 scheduler process (bench.scheduler_proc: the cron scheduler of `baton "
        "scheduler`, without the engine)"
        + (
            f", the engine (bench.engine_proc) and {cfg.workers} baton worker --concurrency "
            f"{cfg.concurrency} running the fired runs"
            if execute
            else ", no engine and no workers (BATON_BENCH_SCHEDULE_EXECUTE=0)"
        )
        + "; schedules made through signup + create_job",
    }


async def _executed(
    bench: BatonBench, group: Replicas, tenants: list[Tenant], deadline: float
) -> JsonDict:
    """Wait (until ``deadline``) for every fired run to succeed on the engine and workers;
    how many did, and how long each task took to be dispatched (admission) and to start
    (a worker) once its run was admissible."""

    async def counts() -> tuple[int, int]:
        succeeded = runs = 0
        for tenant in tenants:
            row = await bench.db.fetchrow(tenant, _EXECUTED)
            succeeded, runs = succeeded + int(row["succeeded"]), runs + int(row["runs"])
        return succeeded, runs

    async def drained() -> bool:
        group.check_alive()
        succeeded, runs = await counts()
        return succeeded == runs

    done = await reached(
        drained, within=max(deadline - time.time(), 10.0), interval=2.0, what="the fired runs"
    )
    succeeded, runs = await counts()
    rows = [row for tenant in tenants for row in await bench.db.fetch(tenant, _START_DELAYS)]
    delays = [float(row["delay"]) for row in rows]
    dispatches = [float(row["dispatch"]) for row in rows if row["dispatch"] is not None]
    return {
        "executed_runs": runs,
        "executed_succeeded": succeeded,
        "executed_all": done and succeeded == runs,
        **lateness_summary(dispatches, prefix="admissible_to_dispatch_"),
        **lateness_summary(delays, prefix="admissible_to_start_"),
    }


# --------------------------------------------------------------------------- failover
FAILOVER_REPLICAS = ("replica-a", "replica-b", "replica-c")


def _first_after(events: list[tuple[float, str, int]], tenant: str, after: float) -> float | None:
    times = [at for at, t, n in events if t == tenant and n > 0 and at > after]
    return min(times) if times else None


async def scheduler_failover(bench: BatonBench) -> JsonDict:
    cfg = bench.cfg
    tenants, per_tenant = cfg.failover_tenants, cfg.failover_per_tenant
    lease = lease_seconds()
    step = 5
    # Timeline (epoch seconds): T0 the first instant; the kill a second after an instant,
    # late enough for a steady-state CPU sample of the survivor before it; the killed
    # replica comes back (under a new name, as a restarted pod would) once the survivor has
    # long taken over; the last instant leaves time for the hand-back.
    # The survivor's CPU over this long just before the kill and just after it - while the
    # killed replica's tenants wait for their leases to lapse, before any is taken over.
    sample = max(3.0, lease - 2.0)
    seed_budget = 25 + tenants * per_tenant * cfg.seed_seconds_per_schedule
    t0 = _ceil(time.time() + seed_budget, step)
    kill_at = t0 + _ceil(max(sample + 1, 20.0), step) + 1
    restart_at = kill_at + max(30.0, 3 * lease)
    last = _ceil(restart_at + 25, step)
    instants = [int(t0 + step * i) for i in range(int((last - t0) / step) + 1)]
    window = {"cron": EVERY_5_SECONDS, "start_at": _iso(t0), "end_at": _iso(last)}
    expected = tenants * per_tenant * len(instants)
    async with replicas(bench, "baton-scheduler-failover") as group:
        seeded = await seed(
            bench, tenants=tenants, per_tenant=per_tenant, schedule=window, label="failover"
        )
        for name in FAILOVER_REPLICAS:
            group.start(name)
        for name in FAILOVER_REPLICAS:
            await group.wait_ready(name, within=max(60.0, t0 - time.time()))
        if time.time() > t0 - 1:
            raise BenchError(
                f"creating the schedules and starting {len(FAILOVER_REPLICAS)} replicas "
                "overran the first instant; raise BATON_BENCH_SEED_SECONDS"
            )
        meter = await group.cpu_meter()
        meter.start()
        await asyncio.sleep(max(0.0, kill_at - sample - time.time()))
        ids = [t.id for t in seeded.tenants]
        chosen = seeded.tenants[0].id
        victim = (await group.holders([chosen]))[chosen]
        if victim not in FAILOVER_REPLICAS:
            raise BenchError(f"no replica holds tenant {chosen}'s lease before the kill")
        survivors = [name for name in FAILOVER_REPLICAS if name != victim]
        survivor_pids = [group.replicas[name].child.pid for name in survivors]
        cpu_0 = sum(_cpu_of(pid) for pid in survivor_pids)
        await asyncio.sleep(max(0.0, kill_at - time.time()))
        held = await group.holders(ids)
        beat = await group.heartbeat(victim)
        cpu_1 = sum(_cpu_of(pid) for pid in survivor_pids)
        killed = group.kill(victim)
        victim_tenants = [t for t, holder in held.items() if holder == victim]
        log.info(
            "killed %s (it held %d of %d tenants; last heartbeat %.2f s before)",
            victim,
            len(victim_tenants),
            len(ids),
            killed - (beat or killed),
        )
        await asyncio.sleep(max(0.0, killed + sample - time.time()))
        cpu_2 = sum(_cpu_of(pid) for pid in survivor_pids)
        await asyncio.sleep(max(0.0, restart_at - time.time()))
        restarted_name = f"{victim}-restarted"
        restarted = group.start(restarted_name)
        await group.wait_ready(restarted_name, within=60)

        async def all_fired() -> bool:
            group.procs.check_alive()
            return group.ticks() >= expected

        timed_out = not await reached(
            all_fired,
            within=max(10.0, last + 2 * lease + 10 - time.time()),
            interval=0.5,
            what="every instant to fire",
        )
        await asyncio.sleep(1.0)  # a late duplicate, if any, would show up in the ledger
        cpu = meter.stop()
        group.poll_logs()
        survivor_fires = [e for name in survivors for e in group.replicas[name].log.fired]
        restarted_log = restarted.log
        replica_logs = [r.log for r in group.replicas.values()]
        fired_by = {name: r.log.total_fired for name, r in group.replicas.items()}
        counts = {
            name: {e: n for e, n in r.log.counts.items() if e.startswith("scheduler.")}
            for name, r in group.replicas.items()
        }
    ledger = await Ledger.read(bench, seeded.tenants)
    want = expected_fires(seeded.jobs, instants)
    checks = ledger.check(want)

    def takeover(tenant: uuid.UUID) -> float | None:
        at = _first_after(survivor_fires, str(tenant), killed)
        return at - killed if at is not None else None

    takeovers = [v for t in victim_tenants if (v := takeover(t)) is not None]
    chosen_takeover = takeover(chosen)
    # The chosen tenant's instants that fell due while nobody served it: how late they fired.
    until = killed + (chosen_takeover if chosen_takeover is not None else 0.0)
    waited = ledger.lateness(
        (job, at) for job in seeded.jobs[chosen] for at in instants if killed < at <= until
    )
    handed_back = [at - restarted.started for at, _, n in restarted_log.fired if n > 0]
    by_instant, _ = committed_lateness(
        [e for r in replica_logs for e in r.admitted],
        instants,
        [e for r in replica_logs for e in r.released],
    )
    admissible_lateness = [v for values in by_instant.values() for v in values]
    return {
        "schedules": tenants * per_tenant,
        "tenants": tenants,
        "cron": EVERY_5_SECONDS,
        "instants": len(instants),
        "lease_seconds": lease,
        "replicas": len(FAILOVER_REPLICAS),
        "killed": victim,
        "killed_held_tenants": len(victim_tenants),
        "killed_after_heartbeat_s": rounded(killed - beat, 2) if beat else None,
        "takeover_seconds": rounded(chosen_takeover, 2) if chosen_takeover is not None else None,
        "takeover_vs_lease": (
            rounded(chosen_takeover / lease, 2) if chosen_takeover is not None else None
        ),
        **(
            {
                "takeover_all_median_s": rounded(statistics.median(takeovers), 2),
                "takeover_all_max_s": rounded(max(takeovers), 2),
            }
            if takeovers
            else {}
        ),
        "tenants_taken_over": len(takeovers),
        "chosen_late_fires": len(waited),
        "chosen_late_fire_max_s": rounded(max(waited), 2) if waited else None,
        "restarted_first_fire_s": rounded(min(handed_back), 2) if handed_back else None,
        "restarted_tenants": len({t for _, t, n in restarted_log.fired if n > 0}),
        **checks,
        "no_fire_lost_or_duplicated": (
            checks["fires_lost"] == 0
            and checks["fires_duplicated"] == 0
            and checks["fires_unexpected"] == 0
            and not timed_out
        ),
        **lateness_summary(admissible_lateness),
        **lateness_summary(ledger.lateness(want), "stamped_"),
        "fired_by": fired_by,
        "survivor_cpu_s_steady": rounded(cpu_1 - cpu_0, 2),
        "survivor_cpu_s_after_kill": rounded(cpu_2 - cpu_1, 2),
        "cpu_sample_s": sample,
        "log_events": counts,
        "measured": "takeover: SIGKILL of the replica holding the chosen tenant's lease -> "
        "the survivor's first fire of that tenant (its log); lost/duplicated: "
        "runs and ticks per (job, instant) in PostgreSQL",
        "cpu_seconds": cpu,
        "setup": f"{len(FAILOVER_REPLICAS)} scheduler processes (bench.scheduler_proc), no "
        "engine, no workers; the one holding the chosen tenant SIGKILLed, then restarted "
        "under a new name; takeover: the first fire of that tenant by either survivor; "
        "survivor CPU: both survivors together",
    }


def _cpu_of(pid: int, default: float = 0.0) -> float:
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return default
    return float(times.user + times.system)


# --------------------------------------------------------------------------- schedules100k
HOURLY_SEED_MARGIN = 1.3  # the lead's creation estimate, from a measured rate, x this


def ahead_seconds() -> float:
    """How long before its instant the scheduler prepares a fire (the replicas' setting)."""
    raw = os.environ.get("BATON_SCHEDULER_AHEAD_SECONDS", "").strip()
    if raw:
        return float(raw)
    return float(Settings.model_fields["scheduler_ahead_seconds"].default)


def _rss(pid: int) -> int | None:
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


def _mib(value: int | None) -> float | None:
    return rounded(value / 2**20, 1) if value else None


async def idle_sample(group: Replicas, seconds: float) -> JsonDict:
    """CPU (% of one core) of the scheduler, PostgreSQL and Redis over ``seconds`` with
    nothing due, and the scheduler's RSS at the end."""
    pid = group.replicas["scheduler"].child.pid
    meter = await group.cpu_meter()
    meter.start()
    await asyncio.sleep(seconds)
    group.procs.check_alive()
    cpu = meter.stop()
    window = max(float(cpu["window_s"]), 1e-3)
    return {
        "window_s": cpu["window_s"],
        "scheduler_cpu_pct": rounded(cpu["scheduler"] * 100 / window, 2),
        "postgres_cpu_pct": rounded(cpu["postgres"] * 100 / window, 2),
        "redis_cpu_pct": rounded(cpu["redis"] * 100 / window, 2),
        "scheduler_rss_mib": _mib(_rss(pid)),
        "cpu_seconds": cpu,
    }


async def schedules100k(bench: BatonBench) -> JsonDict:
    """100,000 hourly schedules over 2,000 tenants, all at the same minute of the hour: the
    top-of-hour burst. The minute is the first whole one after the schedules are made and
    the scheduler has had its preparation window (``BATON_SCHEDULER_AHEAD_SECONDS``), so
    the burst is a real-clock one; every schedule starts at that instant and has no end
    (its next fire is an hour later, the state between bursts)."""
    cfg = bench.cfg
    tenants, per_tenant = cfg.hourly_tenants, cfg.hourly_per_tenant
    total = tenants * per_tenant
    ahead = ahead_seconds()
    per_schedule = (
        HOURLY_SEED_MARGIN / SEED_RATES[-1] if SEED_RATES else cfg.hourly_seed_seconds_per_schedule
    )
    lead = cfg.hourly_lead_seconds or 30 + ahead + total * per_schedule
    instant = int(_ceil(time.time() + lead, 60))
    cron = f"{datetime.fromtimestamp(instant, UTC).minute} * * * *"
    window = {"cron": cron, "start_at": _iso(instant)}
    async with replicas(bench, "baton-schedules100k") as group:
        log.info(
            "creating %d hourly schedules (%s) over %d tenants; the burst at %s (%.0f s away)",
            total,
            cron,
            tenants,
            _iso(instant)[11:19],
            instant - time.time(),
        )
        seeded, startup = await seed_and_start(
            bench,
            group,
            tenants=tenants,
            per_tenant=per_tenant,
            window=window,
            label="hourly",
            before=instant,
            lead_knob="BATON_BENCH_HOURLY_LEAD",
        )
        pid = group.replicas["scheduler"].child.pid
        if cfg.hourly_prepared:
            # A running scheduler wakes for each tenant ``ahead`` before its next instant
            # (the wake its last pass computed; a new schedule asks for a pass at once).
            # Make every tenant due once now and wait until each is back at its wake: the
            # index is then as the previous hour's burst would have left it, whatever
            # passes creation asked for.
            await group.redis.zadd(
                keys.scheduler_due(), {str(t.id): time.time() for t in seeded.tenants}
            )
            wake = instant - ahead

            async def rescored() -> bool:
                group.procs.check_alive()
                head = await group.redis.zrange(keys.scheduler_due(), 0, 0, withscores=True)
                return bool(head) and float(head[0][1]) >= wake - 1

            await wait_until(
                rescored,
                within=max(10.0, instant - 2 - time.time()),
                interval=0.2,
                what="the scheduler to look at every tenant once",
            )
        window_opens = instant - ahead - 3  # the preparation starts at instant - ahead
        idle_before: JsonDict | None = None
        room = window_opens - time.time() - 5
        if room >= 10:
            await asyncio.sleep(5)  # past the start-up's rebuild of the due index
            idle_before = await idle_sample(group, min(room, cfg.hourly_idle_seconds))
        await asyncio.sleep(max(0.0, window_opens - time.time()))
        meter = await group.cpu_meter()
        meter.start()
        profiler = Profiler(group.procs.log_dir) if cfg.profile else None
        if profiler is not None:
            profiler.start("scheduler", pid)
        rss_peak = _rss(pid) or 0
        next_log = time.monotonic() + 15

        async def caught_up() -> bool:
            nonlocal next_log, rss_peak
            group.procs.check_alive()
            rss_peak = max(rss_peak, _rss(pid) or 0)
            ticks = group.ticks()
            if time.monotonic() > next_log:
                next_log = time.monotonic() + 15
                log.info("schedules100k: %d of %d instants dealt with", ticks, total)
            return ticks >= total

        timed_out = not await reached(
            caught_up,
            within=instant + cfg.schedule_wait_seconds - time.time(),
            interval=0.5,
            what="the scheduler to fire the burst",
        )
        cpu = meter.stop()
        if profiler is not None:
            for name, summary in profiler.stop().items():
                log.info("py-spy profile of the %s (schedules100k):\n%s", name, summary)
        passes = group.replicas["scheduler"].log.fired
        last_pass = max((at for at, _, n in passes if n > 0), default=time.time())
        admitted_passes = group.replicas["scheduler"].log.admitted
        released = group.replicas["scheduler"].log.released
        await asyncio.sleep(5.0)  # the burst's last passes settle
        idle_after = await idle_sample(group, cfg.hourly_idle_seconds)
        log_counts = dict(group.replicas["scheduler"].log.counts)
    ledger = await Ledger.read(bench, seeded.tenants)
    want = expected_fires(seeded.jobs, [instant])
    checks = ledger.check(want)
    late = ledger.lateness(want)
    # A fire is admissible once its hand-over (or insert) commits; runs.created_at is the
    # pass's clock reading before that. The scheduler logs each tenant's fires after the
    # commit: that log line's time - the instant, once per fire it reports.
    by_instant, _ = committed_lateness(admitted_passes, [instant], released)
    admissible = by_instant[instant]
    made = [ledger.made[k] - instant for k in want if k in ledger.made]
    fires = checks["fires"]

    def per_fire(component: str) -> float:
        return rounded(cpu[component] * 1000 / max(fires, 1), 3)

    return {
        "schedules": total,
        "tenants": tenants,
        "cron": cron,
        "instant": _iso(instant),
        "ahead_seconds": ahead,
        **checks,
        "all_fired": checks["fires_lost"] == 0 and not timed_out,
        "exactly_once": (
            checks["fires_lost"] == 0
            and checks["fires_duplicated"] == 0
            and checks["duplicate_groups_sql"] == 0
            and checks["fires_unexpected"] == 0
            and not timed_out
        ),
        "caught_up": not timed_out,
        "burst_seconds": rounded(max(admissible), 2) if admissible else None,
        "last_pass_after_instant_s": rounded(last_pass - instant, 1),
        "prepared_by_bench_nudge": cfg.hourly_prepared,
        **lateness_summary(admissible),
        **lateness_summary(late, "stamped_"),
        "prepared_ahead": sum(1 for v in made if v < 0),
        "prepare_first_s": rounded(min(made), 1) if made else None,
        "prepare_last_s": rounded(max(made), 1) if made else None,
        "by_tenant_quarter": by_tenant_quarter(ledger, seeded.jobs, [instant]),
        "scheduler_cpu_s": cpu["scheduler"],
        "scheduler_cpu_ms_per_fire": per_fire("scheduler"),
        "postgres_cpu_ms_per_fire": per_fire("postgres"),
        "redis_cpu_ms_per_fire": per_fire("redis"),
        "system_cpu_ms_per_fire": rounded(
            (cpu["scheduler"] + cpu["postgres"] + cpu["redis"]) * 1000 / max(fires, 1), 3
        ),
        "burst_rss_peak_mib": _mib(rss_peak),
        "idle_scheduler_cpu_pct": idle_after["scheduler_cpu_pct"],
        "idle_scheduler_rss_mib": idle_after["scheduler_rss_mib"],
        "idle_postgres_cpu_pct": idle_after["postgres_cpu_pct"],
        "idle_redis_cpu_pct": idle_after["redis_cpu_pct"],
        "idle_after": idle_after,
        "idle_before": idle_before,
        "seed_seconds": rounded(seeded.seconds),
        "seed_schedules_per_s": rounded(seeded.schedules / seeded.seconds),
        "startup_seconds": rounded(startup, 2),
        "log_events": {k: v for k, v in log_counts.items() if k.startswith("scheduler.")},
        "measured": "lateness: when each fire became admissible - its instant: a fire "
        "released ahead, max(its instant, the commit that released it); one handed over or "
        "inserted at its instant, that commit (the scheduler.fired log line written after "
        "it); stamped_*: runs.created_at (the pass's clock reading; a released fire's is "
        "its preparation) - runs.scheduled_for; prepare_*: the "
        "run id's uuid7 time - the instant; CPU from 3 s before the preparation window "
        "opens (instant - ahead) to the last fire; idle: BATON_BENCH_IDLE_SECONDS from 5 s "
        "after the last fire (nothing due for an hour)",
        "cpu_seconds": cpu,
        "setup": "1 scheduler process (bench.scheduler_proc, no engine), no workers; "
        f"{tenants} tenants x {per_tenant} jobs, `{cron}` from the burst's instant; "
        "schedules made through signup + create_jobs",
    }
