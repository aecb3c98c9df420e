"""Assemble Baton's processes - API, engine, worker - alone or all in one (``baton dev``).

One asyncio loop, one signal handler: SIGINT/SIGTERM stops reading new work everywhere,
lets running tasks finish within the grace period, then closes connections. Nothing else
ends a process: every loop rides out PostgreSQL and Redis outages of any length
(``kernel.dependencies``), and a component that still fails is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Generator

import structlog
import uvicorn

from backend import metrics
from backend.billing.metering import Meter
from backend.core.db import create_engine, create_sessionmaker
from backend.core.redis import create_redis
from backend.core.settings import Settings
from backend.engine.loop import Engine
from backend.metrics.gather import QueueGatherer
from backend.metrics.http import serve_metrics
from backend.scheduler.loop import Scheduler
from backend.triggers.reactor import Reactor
from kernel.dependencies import Backoff
from kernel.secrets import TransitKeys
from worker.executors.base import ExecutorPolicy
from worker.runner import Worker, WorkerConfig
from worker.sandbox.limits import SandboxLimits
from worker.sandbox.probe import unavailable_reason

log = structlog.get_logger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: :func:`run_processes` owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def worker_config(
    settings: Settings,
    *,
    queues: list[str],
    concurrency: int,
    tenant_id: str | None = None,
    transit_keys: TransitKeys | None = None,
) -> WorkerConfig:
    """A worker's configuration from the settings and its command-line options
    (``tenant_id`` and ``transit_keys``: a tenant-hosted worker's, from its credential)."""
    return WorkerConfig(
        queues=tuple(queues),
        concurrency=concurrency,
        tenant_id=tenant_id,
        heartbeat_seconds=settings.heartbeat_seconds,
        visibility_timeout_seconds=settings.visibility_timeout_seconds,
        policy=ExecutorPolicy(
            allow_shell=settings.worker_allow_shell,
            allow_docker=settings.worker_allow_docker,
            sandbox=settings.worker_sandbox,
            sandbox_limits=SandboxLimits(
                memory_mb=settings.worker_sandbox_memory_mb,
                processes=settings.worker_sandbox_processes,
                cpu_seconds=settings.worker_sandbox_cpu_seconds,
                file_mb=settings.worker_sandbox_file_mb,
            ),
            docker_confined=settings.worker_sandbox,
            python_modules=tuple(settings.worker_python_modules),
            http_allowlist=tuple(settings.worker_http_allowlist),
        ),
        transit_keys=transit_keys or TransitKeys(dict(settings.worker_transit_keys)),
    )


async def log_shell_policy(policy: ExecutorPolicy) -> None:
    """Say once, at start, how this worker treats shell tasks (and why it refuses them)."""
    if not policy.allow_shell:
        log.info("worker.shell.refused", setting="BATON_WORKER_ALLOW_SHELL")
    elif not policy.sandbox:
        log.warning("worker.shell.unsandboxed", setting="BATON_WORKER_SANDBOX")
    elif (reason := await unavailable_reason()) is not None:
        log.error(
            "worker.sandbox.unavailable",
            reason=reason,
            effect="shell tasks are refused",
            setting="BATON_WORKER_SANDBOX",
        )
    else:
        log.info("worker.sandbox.ready")


async def _supervised(
    name: str, run: Callable[[], Awaitable[None]], stopping: asyncio.Event
) -> None:
    """Run a component until it returns; if it raises before shutdown, log and start it
    again after a backoff. Every loop already rides out outages on its own; this is the
    last line of defence, so that no error ends a process that should keep serving."""
    backoff = Backoff()
    while True:
        try:
            await run()
            return
        except Exception as error:  # the process's last line of defence
            if stopping.is_set():
                raise
            log.exception("process.component_failed", component=name, error=type(error).__name__)
            await asyncio.sleep(backoff.next_delay())


async def run_processes(
    settings: Settings,
    *,
    api: bool,
    engine: bool,
    worker: WorkerConfig | None,
) -> None:
    """Run the chosen processes in this event loop until SIGINT/SIGTERM."""
    metrics.configure(settings.metrics_tenant_labels)
    # The engine/scheduler and the workers serve Baton's metrics on ports of their own (the
    # API has /metrics); in one process (``baton dev``) the same registry, once per port.
    ports = {
        settings.metrics_port if engine else 0,
        settings.worker_metrics_port if worker is not None else 0,
    }
    closers = [serve_metrics(settings.metrics_host, port) for port in sorted(ports - {0})]
    for port in sorted(ports - {0}):
        log.info("metrics.serving", host=settings.metrics_host, port=port)
    redis = create_redis(settings.redis_url or "")
    # Workers never connect to PostgreSQL: only the engine opens a pool here.
    db_engine = (
        create_engine(
            settings.runtime_database_url(),
            pool_size=settings.db_pool_size,
            custom_plans=True,
            pre_ping=False,  # the engine's hot path: see create_engine
        )
        if engine
        else None
    )
    stopping = asyncio.Event()
    stoppers: list[Callable[[], None]] = [stopping.set]
    tasks: list[asyncio.Task[None]] = []
    if db_engine is not None:
        sessionmaker = create_sessionmaker(db_engine)
        scheduler = Scheduler(settings, sessionmaker, redis)
        the_engine = Engine(settings, sessionmaker, redis, owns=scheduler.owns)
        the_engine.on_redis_lost = scheduler.rebuild_soon
        stoppers.extend([the_engine.stop, scheduler.stop])
        tasks.append(asyncio.create_task(_supervised("engine", the_engine.run, stopping)))
        tasks.append(asyncio.create_task(_supervised("scheduler", scheduler.run, stopping)))
        gatherer = QueueGatherer(
            redis,
            interval=settings.metrics_gather_seconds,
            max_queues=settings.metrics_max_queues,
            sessionmaker=sessionmaker,
        )
        stoppers.append(gatherer.stop)
        tasks.append(asyncio.create_task(_supervised("gatherer", gatherer.run, stopping)))
        reactor = Reactor(sessionmaker, redis, settings)
        stoppers.append(reactor.stop)
        tasks.append(asyncio.create_task(_supervised("reactor", reactor.run, stopping)))
        meter = Meter(sessionmaker, redis, interval=settings.metering_seconds, settings=settings)
        stoppers.append(meter.stop)
        tasks.append(asyncio.create_task(_supervised("meter", meter.run, stopping)))
    if worker is not None:
        await log_shell_policy(worker.policy)
        the_worker = Worker(redis, worker)
        stoppers.append(the_worker.stop)
        tasks.append(asyncio.create_task(_supervised("worker", the_worker.run, stopping)))
    if api:
        from backend.app import create_app

        server = _Server(
            uvicorn.Config(
                create_app(settings),
                host=settings.host,
                port=settings.port,
                log_config=None,
                proxy_headers=True,
            )
        )

        def stop_server() -> None:
            server.should_exit = True

        stoppers.append(stop_server)
        tasks.append(asyncio.create_task(server.serve()))

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: [stop() for stop in stoppers])
    try:
        await asyncio.gather(*tasks)
    finally:
        for close in closers:
            close()
        await redis.aclose()
        if db_engine is not None:
            await db_engine.dispose()
