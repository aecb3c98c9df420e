"""``python -m bench.engine_proc``: Baton's engine without the cron scheduler.

``baton scheduler`` runs the engine and the cron scheduler in one process. schedules10k
measures the cron scheduler's own CPU while the runs it fires are executed, so the
scheduler replica runs alone (``bench.scheduler_proc``) and this process runs the rest of
what ``backend.processes.run_processes`` builds for ``baton scheduler``: the engine
(admission, worker events, sweeps) and the reactor, with the same settings, pool and
Redis client. With no cron scheduler beside it to split tenants by rendezvous, it serves
every tenant. SIGTERM or SIGINT stop it the way they stop ``baton scheduler``.
"""

from __future__ import annotations

import asyncio
import signal

import structlog

from backend import metrics
from backend.core.db import create_engine, create_sessionmaker
from backend.core.settings import Process, Settings
from backend.engine.loop import Engine
from backend.triggers.reactor import Reactor
from kernel.runtime.logs import configure_logging
from kernel.runtime.redis import create_redis

log = structlog.get_logger("bench.engine_proc")


async def serve(settings: Settings) -> None:
    metrics.configure(settings.metrics_tenant_labels)
    redis = create_redis(settings.redis_url or "")
    db_engine = create_engine(
        settings.runtime_database_url(),
        pool_size=settings.db_pool_size,
        custom_plans=True,
        pre_ping=False,
    )
    sessionmaker = create_sessionmaker(db_engine)
    engine = Engine(settings, sessionmaker, redis)  # no owner given: every tenant
    reactor = Reactor(sessionmaker, redis, settings)

    def stop() -> None:
        engine.stop()
        reactor.stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    log.info("bench.engine_proc.started", engine=engine.name)
    try:
        await asyncio.gather(engine.run(), reactor.run())
    finally:
        await redis.aclose()
        await db_engine.dispose()


def main() -> None:
    settings = Settings()
    settings.refuse_unsafe_for(Process.engine)  # as `baton scheduler` does at start
    configure_logging(json_logs=not settings.is_dev)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
