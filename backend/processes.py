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
from collections.abc import Callable, Generator

import structlog
import uvicorn

from backend.billing.metering import Meter
from backend.core.db import create_engine, create_sessionmaker
from backend.core.settings import Settings
from backend.engine.loop import Engine
from backend.metrics.gather import QueueGatherer
from backend.scheduler.loop import Scheduler
from backend.triggers.reactor import Reactor
from kernel.dependencies import supervised
from kernel.runtime import metrics
from kernel.runtime.metrics import serve_metrics
from kernel.runtime.redis import create_redis
from worker.main import log_shell_policy
from worker.runner import Worker, WorkerConfig
from worker.settings import WorkerSettings

log = structlog.get_logger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: :func:`run_processes` owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def worker_config(settings: Settings, *, queues: list[str], concurrency: int) -> WorkerConfig:
    """The configuration of the worker ``baton dev`` runs, from the API's settings - the
    same variables a worker started alone reads (``worker.settings``), mapped the same way."""
    worker_settings = WorkerSettings(
        environment=settings.environment.value,
        data_dir=settings.data_dir,
        heartbeat_seconds=settings.heartbeat_seconds,
        visibility_timeout_seconds=settings.visibility_timeout_seconds,
        allow_shell=settings.worker_allow_shell,
        allow_docker=settings.worker_allow_docker,
        sandbox=settings.worker_sandbox,
        sandbox_memory_mb=settings.worker_sandbox_memory_mb,
        sandbox_processes=settings.worker_sandbox_processes,
        sandbox_cpu_seconds=settings.worker_sandbox_cpu_seconds,
        sandbox_file_mb=settings.worker_sandbox_file_mb,
        python_modules=tuple(settings.worker_python_modules),
        http_allowlist=tuple(settings.worker_http_allowlist),
        transit_key=settings.worker_transit_key,
        transit_key_id=settings.worker_transit_key_id,
        transit_previous_keys=settings.worker_transit_previous_keys,
    )
    return worker_settings.config(queues=queues, concurrency=concurrency)


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
        tasks.append(asyncio.create_task(supervised("engine", the_engine.run, stopping)))
        tasks.append(asyncio.create_task(supervised("scheduler", scheduler.run, stopping)))
        gatherer = QueueGatherer(
            redis,
            interval=settings.metrics_gather_seconds,
            max_queues=settings.metrics_max_queues,
            sessionmaker=sessionmaker,
        )
        stoppers.append(gatherer.stop)
        tasks.append(asyncio.create_task(supervised("gatherer", gatherer.run, stopping)))
        reactor = Reactor(sessionmaker, redis, settings)
        stoppers.append(reactor.stop)
        tasks.append(asyncio.create_task(supervised("reactor", reactor.run, stopping)))
        meter = Meter(sessionmaker, redis, interval=settings.metering_seconds, settings=settings)
        stoppers.append(meter.stop)
        tasks.append(asyncio.create_task(supervised("meter", meter.run, stopping)))
    if worker is not None:
        await log_shell_policy(worker.policy)
        the_worker = Worker(redis, worker)
        stoppers.append(the_worker.stop)
        tasks.append(asyncio.create_task(supervised("worker", the_worker.run, stopping)))
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
