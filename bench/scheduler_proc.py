"""``python -m bench.scheduler_proc``: Baton's cron scheduler alone, for the scheduler scenarios.

``baton scheduler`` runs the engine (admission, worker events, sweeps) and the cron
scheduler in one process. The scheduler scenarios measure the cron scheduler's own work
(fires, lateness, CPU per fire), so this entry builds exactly what
``backend.processes.run_processes`` builds for it - the same settings (``BATON_*``), the
same runtime-role engine and pool, the same Redis client, the same
:class:`backend.scheduler.loop.Scheduler` - and nothing else: the runs it creates are
left queued for an engine that is not there. ``BATON_BENCH_SCHEDULER_NAME`` names the
replica (default: ``scheduler-<host>-<pid>``, as in production). SIGTERM or SIGINT stop
it the way they stop ``baton scheduler``.
"""

from __future__ import annotations

import asyncio
import os
import signal

import structlog

from backend import metrics
from backend.core.db import create_engine, create_sessionmaker
from backend.core.settings import Process, Settings
from backend.scheduler.loop import Scheduler
from kernel.runtime.logs import configure_logging
from kernel.runtime.redis import create_redis

log = structlog.get_logger("bench.scheduler_proc")


async def serve(settings: Settings, name: str | None) -> None:
    metrics.configure(settings.metrics_tenant_labels)
    redis = create_redis(settings.redis_url or "")
    engine = create_engine(
        settings.runtime_database_url(), pool_size=settings.db_pool_size, custom_plans=True
    )
    scheduler = Scheduler(settings, create_sessionmaker(engine), redis, name=name)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, scheduler.stop)
    log.info("bench.scheduler_proc.started", scheduler=scheduler.name, pid=os.getpid())
    try:
        await scheduler.run()
    finally:
        await redis.aclose()
        await engine.dispose()


def main() -> None:
    settings = Settings()
    settings.refuse_unsafe_for(Process.engine)  # as `baton scheduler` does at start
    configure_logging(json_logs=not settings.is_dev)
    asyncio.run(serve(settings, os.environ.get("BATON_BENCH_SCHEDULER_NAME") or None))


if __name__ == "__main__":
    main()
